# sluice: `make cluster-up` and `make test` are the whole set-up on a fresh machine.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
SLUICE  := $(VENV)/bin/sluice
BROKERS ?= 3
DATA    ?= .sluice
ZK      ?=
WORKERS ?= 0
TOPIC   ?=
GROUP   ?=
DASHBOARD_PORT ?= 8080
# pytest-xdist workers: two per core, since the tests mostly wait on broker processes and
# ZooKeeper rather than compute (a 2-core run used about one core with one worker per core);
# worksteal: an idle worker takes tests queued on a busy one, so the suite's long tests
# (100,000-message matrices, drills) do not leave one worker finishing alone at the end
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
TEST_DIST ?= worksteal
CONFIG  ?=
ZK_JAR  := /usr/share/java/zookeeper.jar

ZK_FLAG     = $(if $(ZK),--zookeeper $(ZK),)
CONFIG_FLAG = $(if $(CONFIG),--config $(CONFIG),)
WORKER_FLAG = $(if $(filter-out 0,$(WORKERS)),--workers $(WORKERS) --topic $(TOPIC) --group $(GROUP),)

.PHONY: cluster-up cluster-down test bench bench-peers bench-compaction drill drill-short drill-rolling venv zookeeper chromium kcat kafkajs clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,profile]'
	touch $@

venv: $(VENV)/.installed

# Debian's ZooKeeper server jars and a Java runtime (cluster/supervision/zookeeper.py runs
# them); skipped when ZK names an existing ensemble. The tests always start their own, so
# `test` always needs them.
zookeeper:
	@if [ -z "$(ZK)" ] && { [ ! -f $(ZK_JAR) ] || ! command -v java >/dev/null; }; then \
	  echo "installing Debian's zookeeper package (server jars and a Java runtime)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq zookeeper default-jre-headless >/dev/null) \
	    || { echo "could not install Debian's zookeeper package: install it by hand (apt-get install zookeeper) or pass ZK=host:port"; exit 1; }; \
	fi

# Debian's chromium, for the dashboard's headless browser test
# (tests/cluster/observe/test_web_dashboard.py).
chromium:
	@if ! command -v chromium >/dev/null; then \
	  echo "installing Debian's chromium package (the dashboard's browser test)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null) \
	    || { echo "could not install Debian's chromium package: install it by hand (apt-get install chromium); the browser test is skipped without it"; }; \
	fi

# Debian's kcat, a judge of the Kafka listener (tests/cluster/kafka/test_kcat.py).
kcat:
	@if ! command -v kcat >/dev/null; then \
	  echo "installing Debian's kcat package (the Kafka listener's kcat tests)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq kcat >/dev/null) \
	    || { echo "could not install Debian's kcat package: install it by hand (apt-get install kcat); the kcat tests are skipped without it"; }; \
	fi

# kafkajs from npm, a judge of the Kafka listener (tests/cluster/kafka/js/, its package.json
# pins the version), with the machine's Node; the kafkajs tests are skipped without them.
KAFKAJS_DIR = tests/cluster/kafka/js
kafkajs:
	@if [ ! -d $(KAFKAJS_DIR)/node_modules/kafkajs ]; then \
	  if command -v npm >/dev/null; then \
	    echo "installing kafkajs with npm (the Kafka listener's kafkajs tests)"; \
	    npm install --prefix $(KAFKAJS_DIR) --no-audit --no-fund --silent \
	      || echo "could not install kafkajs with npm; the kafkajs tests are skipped without it"; \
	  else echo "no npm on this machine: the kafkajs tests are skipped"; fi; \
	fi

cluster-up: venv zookeeper
	$(SLUICE) cluster up --detach --data-dir $(DATA) --brokers $(BROKERS) $(ZK_FLAG) $(CONFIG_FLAG) $(WORKER_FLAG) --dashboard-port $(DASHBOARD_PORT)

cluster-down: venv
	$(SLUICE) cluster down --data-dir $(DATA)

test: venv
	@$(MAKE) --no-print-directory zookeeper ZK=
	@$(MAKE) --no-print-directory chromium
	@$(MAKE) --no-print-directory kcat
	@$(MAKE) --no-print-directory kafkajs
	$(PY) -m pytest -n $(TEST_WORKERS) --dist $(TEST_DIST) -q -m "not drill" tests

# The fault drills (cluster/drills/), each on a fresh local cluster in a temp dir with its own
# embedded ZooKeeper; prints their table (docs/drills.md) and writes every result to
# .drills/results.json. DRILL=kill-broker runs one drill,
# DRILL_FLAGS passes options (--count K, --interval S, --json, --keep).
DRILL       ?= all
DRILL_FLAGS ?=
drill: venv
	@$(MAKE) --no-print-directory zookeeper ZK=
	$(SLUICE) drill $(DRILL) --output .drills/results.json $(DRILL_FLAGS)

# The short drills that `make test` leaves out (pytest marker `drill`: every drill of the
# catalog beyond one per family, with two faults each), under pytest-xdist like `make test`.
drill-short: venv
	@$(MAKE) --no-print-directory zookeeper ZK=
	$(PY) -m pytest -n $(TEST_WORKERS) -q -m drill tests

# The rolling-restart drill (docs/rolling-restart.md): eager, cooperative and cooperative+static
# one after the other, each on a fresh 1-broker cluster with 12 workers and 24 partitions;
# prints one table and writes every result to .drills/rolling.json.
drill-rolling: venv
	@$(MAKE) --no-print-directory zookeeper ZK=
	$(SLUICE) drill rolling-restart --protocol all --workers 12 --partitions 24 --output .drills/rolling.json $(DRILL_FLAGS)

# The paper's benchmark (cluster/tools/bench.py, docs/benchmark.md) on a fresh 1-broker cluster
# in a temp dir: a table beside the paper's figures, medians written to .bench/results.json.
# Then how cost grows (cluster/tools/scale_bench.py): 10 x MESSAGES on one partition and MESSAGES
# over 64 partitions of 3 brokers; BENCH_FLAGS=--no-scale leaves them out.
MESSAGES ?= 1000000
RUNS     ?= 3
BENCH_FLAGS ?=
bench: venv
	@$(MAKE) --no-print-directory zookeeper ZK=
	$(PY) -m cluster.tools.bench --messages $(MESSAGES) --runs $(RUNS) --output .bench/results.json \
	  --samples .bench/runs.json $(BENCH_FLAGS)

# sluice beside Redis Streams, NATS JetStream and RabbitMQ streams through one harness
# (cluster/tools/peers/, docs/benchmark.md): installs the peers' Debian packages when missing
# (their packaged services stopped) and the peers extra's clients, runs each system on its own,
# then the bare-Python ceilings; prints one table, writes .bench/peers.json (make bench shows it).
# PEERS_FLAGS passes options (--json, --systems sluice,nats_jetstream, ...).
PEER_MESSAGES ?= 200000
PEERS_FLAGS   ?=
bench-peers: venv
	@$(MAKE) --no-print-directory zookeeper ZK=
	@sh cluster/tools/peers/install-peers.sh
	@$(PY) -c "import redis, hiredis, nats, rstream" 2>/dev/null || $(PY) -m pip install --quiet -e '.[peers]'
	$(PY) -m cluster.tools.peers --messages $(MESSAGES) --peer-messages $(PEER_MESSAGES) --runs $(RUNS) \
	  --output .bench/peers.json $(PEERS_FLAGS)

# Produce latency with and without the log cleaner at work (cluster/tools/compaction_bench.py).
bench-compaction: venv
	@$(MAKE) --no-print-directory zookeeper ZK=
	$(PY) -m cluster.tools.compaction_bench --runs $(RUNS) --output .bench/compaction.json

clean:
	rm -rf $(VENV) .sluice .bench .drills
