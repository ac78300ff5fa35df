"""The training job's process restarts itself with TCMalloc preloaded (training.allocator)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners.engines.cpu_runtime import find_tcmalloc
from training.allocator import (
    CHOICE_ENV,
    RESTARTED_ENV,
    restart_command,
    restart_environment,
    restore_environment,
)

REPO = Path(__file__).resolve().parents[2]
TC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def test_restart_puts_tcmalloc_in_front_and_remembers_the_previous_preload():
    env = restart_environment({"LD_PRELOAD": "/opt/libfoo.so", "HOME": "/root"}, TC)
    assert env["LD_PRELOAD"] == f"{TC}:/opt/libfoo.so"
    assert env[RESTARTED_ENV] == "/opt/libfoo.so"
    assert env["HOME"] == "/root"
    unset = restart_environment({}, TC)
    assert unset["LD_PRELOAD"] == TC and unset[RESTARTED_ENV] == ""


@pytest.mark.parametrize("environ, tcmalloc", [
    ({}, None),  # not installed
    ({CHOICE_ENV: "system"}, TC),  # the user's choice
    ({CHOICE_ENV: " System "}, TC),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, TC),  # an allocator the user preloads
    ({"LD_PRELOAD": f"/x/libmimalloc.so {TC}"}, TC),
    ({RESTARTED_ENV: ""}, TC),  # this process is the restarted one: never a second exec
])
def test_no_restart(environ, tcmalloc):
    assert restart_environment(environ, tcmalloc) is None


def test_a_mistyped_choice_is_refused():
    with pytest.raises(ValueError, match="tcmalloc, system.*'tcmaloc'"):
        restart_environment({CHOICE_ENV: "tcmaloc"}, TC)


def test_restart_command_keeps_interpreter_flags_and_module():
    assert restart_command(["python3", "-u", "-m", "training.finetune", "--config", "c.yaml"], "/venv/bin/python") == [
        "/venv/bin/python", "-u", "-m", "training.finetune", "--config", "c.yaml"]


def test_restore_environment():
    environ = {"LD_PRELOAD": f"{TC}:/opt/libfoo.so", RESTARTED_ENV: "/opt/libfoo.so"}
    restore_environment(environ)
    assert environ == {"LD_PRELOAD": "/opt/libfoo.so"}
    environ = {"LD_PRELOAD": TC, RESTARTED_ENV: ""}
    restore_environment(environ)
    assert environ == {}
    environ = {"LD_PRELOAD": "/opt/libfoo.so"}  # not restarted: left alone
    restore_environment(environ)
    assert environ == {"LD_PRELOAD": "/opt/libfoo.so"}


PROBE = """
import json, os, sys
print("before", os.getpid(), flush=True)
from training.allocator import allocator_in_use, restart_with_tcmalloc
restart_with_tcmalloc()
print(json.dumps({"pid": os.getpid(), "allocator": allocator_in_use(), "preload": os.environ.get("LD_PRELOAD"),
                  "marker": os.environ.get("INVERSE_INSTRUCT_PRELOAD_BEFORE"), "argv": sys.argv}))
"""


def _probe(extra_env: dict) -> tuple[list[int], dict]:
    """The pids the probe printed before its restart point (one per start of the script) and its report."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", CHOICE_ENV, RESTARTED_ENV)}
    env.update(extra_env, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROBE, "arg1"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    *starts, report = proc.stdout.splitlines()
    assert starts and all(line.startswith("before ") for line in starts), proc.stdout
    return [int(line.split()[1]) for line in starts], json.loads(report)


@pytest.mark.skipif(find_tcmalloc() is None, reason="TCMalloc (libtcmalloc-minimal4) is not installed; CI installs it")
def test_the_process_restarts_itself_with_tcmalloc_loaded():
    starts, after = _probe({})
    assert after["allocator"].startswith("libtcmalloc"), after
    # Started twice (the exec runs the script again), as one process: torchrun watches its ranks' pids.
    assert starts == [after["pid"], after["pid"]]
    assert after["preload"] is None and after["marker"] is None  # its own subprocesses start as before
    assert after["argv"] == ["-c", "arg1"]
    starts, kept = _probe({CHOICE_ENV: "system"})
    assert kept["allocator"] == "system" and starts == [kept["pid"]]


def test_a_mistyped_choice_ends_the_job_with_one_line():
    env = dict(os.environ, PYTHONPATH=str(REPO), **{CHOICE_ENV: "jemalloc"})
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"inverse-instruct train: error: {CHOICE_ENV} must be one of tcmalloc, system, got 'jemalloc'"]
