# The two commands of the README. Both set up .venv first (idempotent); `make test` also installs the headless
# browser that tests/test_browser.py drives (make main does not need it).
.PHONY: main test test-fast test-random setup setup-test lab
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
lab: setup
	.venv/bin/dictsr lab
