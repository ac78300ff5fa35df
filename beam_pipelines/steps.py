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
    # ``done`` is the job's own last output, which some jobs write before they decide to fail (an unbalanced
    # evaluation writes its summary, then exits 1): a step counts as done only once it also exited 0 here.
    succeeded = done.parent / f".{done.name}.step-ok"
    if done.exists() and succeeded.exists():
        print(f"[{driver}] {name}: already done ({done})", file=sys.stderr, flush=True)
        return
    if done.exists():
        print(f"[{driver}] {name}: {done} exists but the step did not succeed; running it again", file=sys.stderr,
              flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{driver}] {name}: {shlex.join(command)}\n[{driver}]   log: {log}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log, "ab") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if code != 0:
        raise SystemExit(f"[{driver}] {name} failed (exit {code}); see {log}")
    if not done.exists():
        raise SystemExit(f"[{driver}] {name}: the job exited 0 but did not write {done}, the file that marks it "
                         f"done; see {log}")
    succeeded.write_text(shlex.join(command) + "\n", encoding="utf-8")
    print(f"[{driver}] {name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
