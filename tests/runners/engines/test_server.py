"""The engine server (runners.engines.server): a real server process, here hosting the fake engine so the protocol,
failures and clean-up are tested in seconds. The vLLM engine it hosts by default is tested in test_engines.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from runners.api import SamplingSpec
from runners.engines import EngineConfig
from runners.engines.fake_engine import FAIL_MARKER, FakeEngine
from runners.engines.server import ServedEngine, server_environment
from runners.options import engine_config_from_options
from tests.conftest import REPO
from tests.runners.engines.test_cpu_runtime import installed_runtime_libraries

FAKE = EngineConfig(engine="fake")
PROMPTS = ["def add(a, b):", f"refused {FAIL_MARKER}", "Reverse a string."]
SPECS = [SamplingSpec(n=2, max_tokens=8, seed=1), SamplingSpec(max_tokens=8), SamplingSpec(n=3, seed=7)]


def _gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids, timeout: float = 15) -> list[int]:
    deadline = time.time() + timeout
    while time.time() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if not _gone(pid)]


@pytest.fixture
def served():
    engine = ServedEngine(FAKE)
    yield engine
    engine.close()


def test_a_served_engine_answers_as_the_engine_itself_does(served):
    direct = FakeEngine(FAKE)
    expected = direct.generate(PROMPTS, SPECS)
    assert [r.error for r in expected] == ["", "fake engine: request refused", ""]  # both kinds of answer
    assert served.generate(PROMPTS, SPECS) == expected
    streamed = []
    assert served.generate(PROMPTS, SPECS, on_result=lambda i, r: streamed.append((i, r))) == expected
    assert sorted(streamed, key=lambda item: item[0]) == list(enumerate(expected))
    ids = [(1, 2), (3,), (4, 5, 6)]
    assert served.next_token_logprobs(PROMPTS, ids) == direct.next_token_logprobs(PROMPTS, ids)
    assert served.model_dtype is None and served.tokenizer is None  # the fake engine has neither
    # The server is one process of its own, a child of this one.
    (pid,) = served.engine_pids()
    assert pid != os.getpid() and psutil.Process(pid).ppid() == os.getpid()


def test_a_failing_result_callback_is_raised_and_the_next_call_still_works(served):
    seen = []

    def failing(i, result):
        seen.append(i)
        raise KeyError("sink broke")

    with pytest.raises(KeyError, match="sink broke"):
        served.generate(PROMPTS, SPECS, on_result=failing)
    assert seen == [0]  # the first failure stops the callbacks, the answer is still read to its end
    assert served.generate(PROMPTS[:1], SPECS[:1]) == FakeEngine(FAKE).generate(PROMPTS[:1], SPECS[:1])


def test_a_bad_request_is_an_error_and_the_server_keeps_serving(served):
    with pytest.raises(ValueError, match="one SamplingSpec per prompt"):
        served.generate(PROMPTS, SPECS[:1])  # checked before sending
    with pytest.raises(RuntimeError, match="one token id list per prompt"):
        served.next_token_logprobs(PROMPTS, [(1,)])  # raised in the server, reported with its traceback
    assert served.next_token_logprobs(PROMPTS[:1], [(1,)])[0].logprobs


def test_a_killed_server_is_a_clear_error_and_leaves_nothing_behind():
    engine = ServedEngine(FAKE)
    (pid,) = engine.engine_pids()
    watchdog = engine.watchdog_pid()
    assert watchdog and not _gone(watchdog)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match=rf"engine server \(pid {pid}\) exited with status -9"):
        engine.generate(PROMPTS, SPECS)
    with pytest.raises(RuntimeError, match="engine is closed"):
        engine.generate(PROMPTS, SPECS)
    assert _wait_gone([pid, watchdog]) == []


def test_a_server_that_cannot_build_its_engine_says_why(tmp_path):
    broken = tmp_path / "script.json"
    broken.write_text("{not json")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(RuntimeError, match=r"failed to start:[\s\S]*JSONDecodeError"):
        ServedEngine(EngineConfig(engine="fake", model=str(broken)))
    left = [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert _wait_gone(left) == []


def test_close_stops_the_server_and_its_watchdog():
    engine = ServedEngine(FAKE)
    pids = engine.engine_pids() + [engine.watchdog_pid()]
    assert len(pids) == 2
    engine.close()
    engine.close()  # twice is harmless
    assert _wait_gone(pids) == []


def test_the_caller_dying_takes_the_server_with_it(tmp_path):
    """SIGKILL of the process that owns a served engine: no Python clean-up runs there, the watchdog stops it."""
    script = ("import json, sys, time\nfrom runners.engines import EngineConfig\n"
              "from runners.engines.server import ServedEngine\n"
              "engine = ServedEngine(EngineConfig(engine='fake'))\n"
              "print(json.dumps(engine.engine_pids()), flush=True)\ntime.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        server_pids = json.loads(owner.stdout.readline())
        assert len(server_pids) == 1 and not _gone(server_pids[0])
        owner.kill()
        owner.wait(10)
        assert _wait_gone(server_pids, timeout=30) == []
    finally:
        if owner.poll() is None:
            owner.kill()


def test_the_server_process_imports_neither_numba_nor_beam():
    """vLLM's in-process start-up fails once numba is loaded (its module scan): the server must stay lean."""
    probe = ("import sys, runners.engines.server, runners.engines.vllm_engine, runners.engines.fake_engine\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'llvmlite', 'apache_beam', "
             "'transforms', 'torch', 'vllm'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]"  # torch and vLLM load only when the engine is built


def test_the_server_environment():
    caller = {"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"}
    env = server_environment(EngineConfig(kv_cache_gb=1.5), caller)
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["VLLM_CPU_KVCACHE_SPACE"] == "1.5"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
    assert "LD_PRELOAD" not in env and caller == {"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"}
    preloaded = server_environment(EngineConfig(cpu_runtime_preload=True), caller)
    assert preloaded.get("LD_PRELOAD") == ":".join(installed_runtime_libraries())  # set at the server's start


def test_where_vllm_runs_by_default():
    assert EngineConfig().vllm_host_for(gpu=False) == "server"
    assert EngineConfig().vllm_host_for(gpu=True) == "spawned"
    assert EngineConfig(tensor_parallel_size=2).vllm_host_for(gpu=False) == "spawned"
    assert EngineConfig(vllm_host="spawned").vllm_host_for(gpu=False) == "spawned"
    assert EngineConfig(vllm_host="server").vllm_host_for(gpu=True) == "server"
    with pytest.raises(ValueError, match="vllm_host must be one of"):
        EngineConfig(vllm_host="elsewhere")
    assert engine_config_from_options(PipelineOptions(["--vllm-host=spawned"])).vllm_host == "spawned"
    assert engine_config_from_options(PipelineOptions([])).vllm_host == "auto"


def test_close_during_a_long_call_ends_the_server_at_once():
    """A stop (Ctrl-C, SIGTERM) while the engine works on a batch: close() used to wait for the call's lock, so
    for the whole batch (a probe saw 28-36 s), and only then ask the server to close."""
    import threading

    from runners.engines.fake_engine import SLOW_MARKER, SLOW_SECONDS

    engine = ServedEngine(FAKE)
    pids = engine.engine_pids()
    failures = []

    def call():
        try:
            engine.generate([f"slow {SLOW_MARKER}"], [SamplingSpec(max_tokens=8)])
        except RuntimeError as err:
            failures.append(err)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)  # the call is waiting on the server
    started = time.monotonic()
    engine.close()
    caller.join(SLOW_SECONDS)
    assert time.monotonic() - started < SLOW_SECONDS / 4
    assert not caller.is_alive() and failures and "exited" in str(failures[0])
    assert _wait_gone(pids) == []


def test_a_stop_while_the_server_starts_ends_it_at_once():
    """close() while the server was still starting sent "close" to a server that reads nothing until it has
    started, and waited up to CLOSE_TIMEOUT_S (a probe: a SIGTERM waited 10 s for vLLM's start)."""
    import threading

    from runners.engines.cleanup import LIVE_ENGINES, close_all_engines
    from runners.engines.fake_engine import SLOW_MARKER, SLOW_SECONDS

    failures = []

    def start():
        try:
            ServedEngine(EngineConfig(engine="fake", model=f"slow-start {SLOW_MARKER}"))
        except RuntimeError as err:
            failures.append(err)

    before = set(LIVE_ENGINES)
    starter = threading.Thread(target=start)
    starter.start()
    time.sleep(2.0)  # the server is starting
    assert set(LIVE_ENGINES) - before
    started = time.monotonic()
    close_all_engines()
    starter.join(SLOW_SECONDS)
    assert time.monotonic() - started < SLOW_SECONDS / 4 and not starter.is_alive() and failures


def test_the_error_line_of_a_chained_multiline_traceback_is_its_last_exception():
    from runners.api import last_error_line

    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise ValueError("first line\nsecond line") from None
    except ValueError:
        import traceback

        text = traceback.format_exc()
    assert last_error_line(text) == "ValueError: first line\nsecond line"
    chained = "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'a'\n\nDuring handling of the " \
              "above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"y\"" \
              ", line 2\n    raise OSError(5)\nOSError: 5\n"
    assert last_error_line(chained) == "OSError: 5"


def test_the_vllm_server_caps_onednn_below_amx_only_when_amx_is_off():
    """On a CPU with AMX, vLLM's AMX kernels made a prompt's log-probs depend on its batch neighbours (the engine
    tier's exact-judging and re-run tests failed on an AMX Xeon). ``off`` caps oneDNN below AMX from the server's
    start; ``invariant`` (the default) and ``full`` keep it; every mode is in the inference cache's key."""
    from runners.engines.server import server_environment
    from runners.engines.vllm_plugin import CPU_AMX_MODES, ONEDNN_WITHOUT_AMX
    from runners.options import result_settings

    assert EngineConfig().cpu_amx == "invariant"
    off = server_environment(EngineConfig(engine="vllm", cpu_amx="off"), {})
    assert off["ONEDNN_MAX_CPU_ISA"] == ONEDNN_WITHOUT_AMX
    for mode in ("invariant", "full"):
        assert "ONEDNN_MAX_CPU_ISA" not in server_environment(EngineConfig(engine="vllm", cpu_amx=mode), {})
    assert [result_settings(EngineConfig(engine="vllm", cpu_amx=mode))["cpu_amx"] for mode in CPU_AMX_MODES] == list(
        CPU_AMX_MODES)
    assert "cpu_amx" not in result_settings(EngineConfig(engine="transformers"))
    # eager and compiled vLLM round differently: an explicit choice keys apart; the default keeps its key
    keys = {eager: json.dumps(result_settings(EngineConfig(engine="vllm", enforce_eager=eager)), sort_keys=True)
            for eager in (None, True, False)}
    assert len(set(keys.values())) == 3
    assert "enforce_eager" not in result_settings(EngineConfig(engine="vllm"))
    with pytest.raises(ValueError, match="cpu_amx must be one of"):
        EngineConfig(cpu_amx=True)


def test_the_vllm_plugin_sets_the_amx_mode_in_vllms_own_processes_only_when_asked():
    """vLLM's spawned engine core and workers are fresh processes: only a vLLM plugin (entry point
    vllm.general_plugins, run in each) can set their kernels' AMX mode. With the plugin missing, a spawned engine
    crashed under the oneDNN cap on an AMX Xeon (EngineDeadError in the engine tier)."""
    from importlib.metadata import entry_points

    from runners.engines.vllm_plugin import AMX_MODE_ENV

    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("inverse_instruct_cpu_kernels") == "runners.engines.vllm_plugin:register", plugins
    probe = ("import torch\nfrom runners.engines.vllm_plugin import register\nreal = torch.cpu._is_amx_tile_supported()"
             "\nregister()\nimport vllm._custom_ops as ops\nfrom vllm.model_executor.layers import utils\n"
             "print(real, torch.cpu._is_amx_tile_supported(), ops.onednn_mm.__name__,"
             " utils.check_cpu_sgl_kernel.__name__)\n")
    env = {k: v for k, v in os.environ.items() if k != AMX_MODE_ENV}

    def run(**extra) -> list[str]:
        return subprocess.run([sys.executable, "-c", probe], env={**env, **extra}, capture_output=True, text=True,
                              check=True).stdout.split()

    vllms_own = ["onednn_mm", "check_cpu_sgl_kernel"]
    real = run()[0]
    assert run() == [real, real, *vllms_own]  # the CPU's own answer, vLLM's own kernels
    assert run(**{AMX_MODE_ENV: "full"}) == [real, real, *vllms_own]
    # off: vLLM's kernel choice sees no AMX
    assert run(**{AMX_MODE_ENV: "off"}) == [real, "False", *vllms_own]
    # invariant: AMX attention as vLLM chooses it; every linear through oneDNN, in row blocks
    assert run(**{AMX_MODE_ENV: "invariant"}) == (
        [real, real, "onednn_mm_in_row_blocks", "_no_packed_small_linears"] if real == "True"
        else [real, real, *vllms_own])
