# The two commands of the README. Both set up .venv first (idempotent); `make test` also installs the headless
# browser that tests/test_browser.py drives (make main does not need it).
.PHONY: main test setup setup-test lab
setup:
	@bash scripts/setup.sh
setup-test:
	@bash scripts/setup.sh --browser
main: setup
	.venv/bin/dictsr main
test: setup-test
	.venv/bin/python -m pytest -q
lab: setup
	.venv/bin/dictsr lab
