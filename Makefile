.PHONY: setup demo test lint typecheck

setup:
	scripts/setup.sh

demo:
	scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/python -m ruff check service tests deploy/cvat

typecheck: setup
	.venv/bin/python -m mypy service
