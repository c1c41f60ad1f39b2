# gmchain — developer entry points. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt system-leveldb soak soak-bench sim-long bench clean install wheel wheelhouse image arm64 arm64-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[node,dev]'
	if [ -f $(LEVELDB_H) ]; then $(MAKE) --no-print-directory system-leveldb \
		|| echo "note: compiling plyvel failed; it keeps the LevelDB its wheel bundles"; \
	else echo "note: plyvel uses the LevelDB and snappy its wheel bundles (docs/ops.md, \
	\"The LevelDB build\"): apt-get install libleveldb-dev libsnappy-dev, then make system-leveldb"; fi
	touch $(STAMP)

install: $(STAMP)

# system-leveldb: plyvel compiled here against the system's LevelDB and snappy (Debian:
# libleveldb-dev, libsnappy-dev) instead of its manylinux wheel, whose bundled copies are built
# without optimisation: snappy compresses ~10x slower and LevelDB's compactions cost ~2x the CPU
# (docs/ops.md, "The LevelDB build"; docs/benchmarks.md, session 9). `make` does this by itself
# when the headers are there. Same plyvel version, same LevelDB file format.
LEVELDB_H ?= /usr/include/leveldb/db.h
system-leveldb:
	test -f $(LEVELDB_H) || { echo "no $(LEVELDB_H): apt-get install libleveldb-dev libsnappy-dev"; exit 1; }
	$(BIN)/python -m pip install -q --force-reinstall --no-deps --no-binary plyvel \
		"plyvel==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("plyvel"))')"
	$(BIN)/python -m gmchain.ledger.leveldb_build --require-system

# wheel: dist/gmchain-<version>-py3-none-any.whl, offline, from this checkout. The commit is
# written into the wheel as gmchain/COMMIT (what `gmchain --version` and gmchain_build_info show
# where there is no git; node/buildinfo.py rule 2) and removed from the source tree again.
wheel: $(STAMP)
	rm -rf build dist/gmchain-*.whl
	git rev-parse --short=12 HEAD > gmchain/COMMIT 2>/dev/null || rm -f gmchain/COMMIT
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation --no-index -q -w dist . ; \
		status=$$?; rm -f gmchain/COMMIT; rm -rf build; exit $$status
	@ls dist/gmchain-*.whl

# wheelhouse: every wheel `gmchain[node]` needs but gmchain's own, in dist/wheelhouse (the
# container image installs from it and dist/ with --no-index; docs/ops.md, "Container image").
# Where the system's LevelDB headers are, plyvel's wheel is compiled against them (the image
# installs libleveldb1d) instead of the manylinux wheel's unoptimised copies (system-leveldb);
# such a wheel needs the image's libraries to match this machine's: build on Debian bookworm.
# If compiling fails, the manylinux wheel is taken.
wheelhouse: wheel
	rm -rf dist/wheelhouse
	$(if $(wildcard $(LEVELDB_H)),$(BIN)/python -m pip wheel -q --no-binary plyvel \
		-w dist/wheelhouse "$$(ls dist/gmchain-*.whl)[node]" || { rm -rf dist/wheelhouse; \
		echo "note: compiling plyvel failed; the wheelhouse takes plyvel's manylinux wheel"; } ;) \
	test -d dist/wheelhouse || $(BIN)/python -m pip wheel -q \
		-w dist/wheelhouse "$$(ls dist/gmchain-*.whl)[node]"
	rm -f dist/wheelhouse/gmchain-*.whl

# image: the container image gmchain:<version> (deploy/container/build.sh; podman or docker).
image: wheelhouse
	deploy/container/build.sh

run: $(STAMP)
	$(BIN)/gmchain dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p gmchain

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -n 2 -q tests

bench: $(STAMP)
	mkdir -p out
	$(BIN)/gmchain bench --profile single --duration 60 --json out/bench-single.json
	$(BIN)/gmchain bench --profile cluster4 --duration 60 --json out/bench-cluster4.json

# soak: every `soak` test, among them the chaos drill (tests/test_chaos.py) for GMCHAIN_SOAK_S
# seconds (default 1800); -s prints each drill's counts; then soak-bench.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -m soak -o addopts='' --timeout 7200 tests
	GMCHAIN_REQUIRE_SMALL_FS=1 $(BIN)/python -m pytest -q tests/test_fault_04_full_disk.py
	$(MAKE) soak-bench

# soak-bench: the CAICT suite on four validators with a stability phase of SOAK_BENCH_S seconds
# (default 3600; the seed's certificate is 12 h = 43200) at 20 % of the knee; the report
# (JSON, Markdown, HTML, SVG) shows RSS and latency drift over it. About 1 h 10 min at the default.
SOAK_BENCH_S ?= 3600
soak-bench: $(STAMP)
	mkdir -p out/soak
	$(BIN)/gmchain bench --profile cluster4 --rate 1000 --scenario caict \
		--stability-seconds $(SOAK_BENCH_S) --json out/soak/cluster4-caict.json

sim-long: $(STAMP)
	$(BIN)/python -m gmchain.consensus.sim --seeds 20000 --nodes 4 --byzantine 1 --faults all --json
	$(BIN)/python -m gmchain.consensus.sim --seeds 2000 --nodes 4 --byzantine 1 --faults all --reconfig 3 --spares 2 --json
	$(BIN)/python -m gmchain.consensus.sim --seeds 500 --nodes 7 --byzantine 2 --faults all --reconfig 3 --spares 2 --json
	$(BIN)/python -m pytest -q -m simlong -o addopts='' --timeout 7200 tests

# arm64: the aarch64 bundle for Kylin V10 / Kunpeng (docs/deploy-arm64.md), built in a Debian arm64
# root under qemu-user-static: dist/gmchain-<version>-linux-aarch64.tar.gz. Needs root; first run
# 20-40 min. arm64-test: the bundle on a Kylin-like arm64 root, emulated (30-60 min). Neither is
# part of `make test`; tests/test_arm64_bundle.py checks the inputs (and a built bundle's manifest).
arm64: $(STAMP)
	bash deploy/arm64/build.sh

arm64-test: $(STAMP)
	bash deploy/arm64/test.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info gmchain/COMMIT
