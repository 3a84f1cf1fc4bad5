.PHONY: setup demo test lint

setup:
	scripts/setup.sh

demo:
	scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/python -m ruff check service tests
