# The two commands of the README. Both set up .venv first (idempotent); `make test` also installs the headless
# browser that tests/test_browser.py drives (make main does not need it).
.PHONY: main test test-fast test-random test-offline setup setup-test lab
setup:
	@bash scripts/setup.sh
setup-test:
	@bash scripts/setup.sh --browser
main: setup
	.venv/bin/dictsr main
test: setup-test
	.venv/bin/python -m pytest -q
# the inner loop: everything not marked slow (network, browser and gpu tests skip themselves where they cannot run)
test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"
# the suite in a shuffled order (pytest-random-order), to show no test depends on another's leftovers
test-random: setup-test
	.venv/bin/python -m pytest -q --random-order
# the suite with no network at all, after setup fetched the weights: a fresh network namespace with only loopback
# (for torchrun; needs root or user namespaces, and iproute2); the `network` tests skip with their reason
test-offline: setup-test
	unshare --net --map-root-user sh -c 'ip link set lo up && .venv/bin/python -m pytest -q'
lab: setup
	.venv/bin/dictsr lab
