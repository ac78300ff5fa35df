"""Steps of the multi-job drivers (``inverse-instruct paper``, ``self-play-loop``): each job as its own process,
skipped when already finished. Light on purpose: a driver imports neither Beam nor torch."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_step(driver: str, name: str, command: list[str], log: Path, done: Path) -> None:
    """One step of a multi-job driver (``paper``, ``self-play-loop``) as its own process, unless ``done`` exists
    (a re-run continues where a stopped run ended); its output goes to ``log``."""
    if done.exists():
        print(f"[{driver}] {name}: already done ({done})", file=sys.stderr, flush=True)
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{driver}] {name}: {shlex.join(command)}\n[{driver}]   log: {log}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log, "ab") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if code != 0 or not done.exists():
        raise SystemExit(f"[{driver}] {name} failed (exit {code}); see {log}")
    print(f"[{driver}] {name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
