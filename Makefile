# The two commands of the README. Both set up .venv first (idempotent).
.PHONY: main test setup lab
setup:
	@bash scripts/setup.sh
main: setup
	.venv/bin/dictsr main
test: setup
	.venv/bin/python -m pytest -q
lab: setup
	.venv/bin/dictsr lab
