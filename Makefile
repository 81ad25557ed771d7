# MedUI: `make run` starts the app, `make test` runs every test. Both set everything up first.
.PHONY: run test lint bench clean frontend

PORT ?= 8501
# The loopback only: the app is for the person at this machine unless sign-in is configured. On a shared
# server: [auth] in .streamlit/secrets.toml, MEDUI_REQUIRE_AUTH=1 and e.g. `make run MEDUI_ADDRESS=0.0.0.0`.
MEDUI_ADDRESS ?= 127.0.0.1

run:
	@scripts/setup.sh
	.venv/bin/python -m medui.ui.serve --server.address $(MEDUI_ADDRESS) --server.port $(PORT)

test:
	@scripts/setup.sh test
	@scripts/ensure-browser.sh
	@scripts/ensure-services.sh
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -ra -n 2 --dist loadfile

lint:
	@scripts/setup.sh test
	.venv/bin/ruff check .
	.venv/bin/mypy

bench:
	@scripts/setup.sh test
	.venv/bin/python bench/bench_io.py
	.venv/bin/python bench/bench_inference.py
	.venv/bin/python bench/bench_training.py
	.venv/bin/python bench/bench_viewer.py

# Rebuild the reading component's bundle (medui/ui/static/reader.js, committed: `make run` needs no Node)
# from frontend/ with the locked npm packages. Needs Node 18+ and npm.
frontend:
	cd frontend && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf .venv .pytest_cache
