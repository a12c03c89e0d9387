# Riskmon — the two commands of the README, and a few for developers.
.PHONY: demo test test-fast stack-up stack-down stack-status lint format bench

# options of the demo: make demo DEMO_ARGS="--days 30 --rate 100 --seconds 300 --keep-stack"
demo:            ## install what is missing, start Kafka + Redis + a worker, feed traffic, show alerts
	./scripts/bootstrap
	.venv/bin/riskmon demo $(DEMO_ARGS)

test:            ## install what is missing, start the stack, run lint, types and the whole suite
	./scripts/test

test-fast:       ## unit tests only, no stack
	./scripts/test --fast

stack-up:
	./scripts/bootstrap && .venv/bin/riskmon stack up

stack-down:
	.venv/bin/riskmon stack down

stack-status:
	.venv/bin/riskmon stack status

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

bench:           ## replay throughput and detection quality on simulated traffic
	.venv/bin/python bench/bench_replay.py
