# Every target builds its own virtualenv, so `make run` and `make test` work on a fresh
# machine that has only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck unit soak bench clean e2e-local

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/raftkv cluster

# tests/, then the local end-to-end run (operator + API stand-in + real members) on its
# own: that run's operator, API stand-in and fake kubelet are threads of the pytest
# process, and under coverage's tracer they were several times slower (steps of a
# minute where 10 s is usual). The real-cluster suite is `make e2e-cluster`.
# Coverage floors, each 90%: the Raft core with storage, and the replicated state
# machine (kv: the store, MVCC, leases, watch), reported from the one run's data.
# The seeded simulation schedules (4,000 per run) go in a run of their own without
# coverage's tracer, which made them three times slower (400 s of an 11-minute run;
# 130 s untraced); the core's coverage comes from the paper-named tests (99% without
# the schedules).
SIM_SCHEDULES := tests/sim/test_simulation.py::test_random_schedules
test: $(STAMP) lint typecheck
	$(BIN)/pytest -q --cov=raftkv.raft --cov=raftkv.storage --cov=raftkv.kv --cov-report= \
		--deselect $(SIM_SCHEDULES) tests
	$(BIN)/coverage report --include='*/raftkv/raft/*,*/raftkv/storage/*' --fail-under=90
	$(BIN)/coverage report --include='*/raftkv/kv/*' --fail-under=90
	$(BIN)/pytest -q $(SIM_SCHEDULES)
	$(BIN)/pytest -q e2e/local

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Long runs: 10,000 simulator schedules, then a 10-minute nemesis soak (needs root
# for network namespaces; skipped with the reason otherwise).
soak: $(STAMP)
	RAFTKV_SOAK=1 $(BIN)/pytest -q -m soak tests/sim tests/nemesis \
		tests/operator/test_tls_transition_operator.py

e2e-local: $(STAMP)
	$(BIN)/pytest -v e2e/local

bench: $(STAMP)
	$(BIN)/python bench/raft_bench.py
	$(BIN)/python bench/wal_bench.py

# The benchmarks that start members use the test helpers (tests/support).
.PHONY: bench-kv bench-nemesis bench-grpc
bench-kv: $(STAMP)
	PYTHONPATH=tests $(BIN)/python bench/kv_bench.py

bench-nemesis: $(STAMP)
	PYTHONPATH=tests $(BIN)/python bench/nemesis_soak.py

# raftkv vs etcd 3.4 over etcd's v3 gRPC API (docs/etcd.md, "Benchmark").
bench-grpc: $(STAMP)
	PYTHONPATH=tests $(BIN)/python bench/grpc_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

# manifests/ and the chart README's values table are generated from charts/raftkv;
# tests/shipping fail when they are out of date.
.PHONY: manifests
manifests: $(STAMP)
	$(BIN)/python scripts/render_manifests.py

# The end-to-end suite on a real cluster: $KUBECONFIG, else ~/.kube/config (where kind
# and minikube write theirs); skipped, with the reason, when no cluster answers.
.PHONY: e2e-cluster
e2e-cluster: $(STAMP)
	KUBECONFIG="$${KUBECONFIG:-$$HOME/.kube/config}" $(BIN)/pytest e2e/cluster -v -o log_cli=true --log-cli-level=INFO
