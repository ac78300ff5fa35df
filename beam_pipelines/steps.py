"""Steps of the multi-job drivers (``inverse-instruct paper``, ``self-play-loop``): each job as its own process,
skipped when already finished. Light on purpose: a driver imports neither Beam nor torch.

A finished step leaves a marker next to the file that marks it done (``.<done>.step-ok``): the command it ran
(without the interpreter or launcher and ``--resume``), a fingerprint of the marker of every step whose output it
read, and an id of its own run. A re-run skips the step only when both still match; otherwise it refuses, naming
the difference, since the step's outputs would be reported as this run's.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

# Arguments that say how a step continues, never what it computes.
IGNORED_ARGUMENTS = frozenset({"--resume"})


def marker_path(done: Path) -> Path:
    return done.parent / f".{done.name}.step-ok"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temporary file in the same directory, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def identity(command: Sequence[str], prefix: int = 1) -> list[str]:
    """What a step's command computes: the command without its first ``prefix`` words (the interpreter, or a
    launcher such as ``torchrun --nproc_per_node 8`` followed by the interpreter's ``-m``) and without
    ``--resume``."""
    return ["<runner>", *(a for a in command[prefix:] if a not in IGNORED_ARGUMENTS)]


def fingerprint(done: Path) -> str | None:
    """The fingerprint of a finished step: its marker's digest (the marker holds an id of that run, so a step
    that ran again has another fingerprint even with the same command); None when it has no marker."""
    try:
        return hashlib.sha256(marker_path(done).read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return None


def _recorded(marker: Path, prefix: int) -> dict[str, Any]:
    text = marker.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "command" in data:
        return data
    # An older marker: the plain command, no upstream fingerprints.
    return {"command": identity(shlex.split(text), prefix), "legacy": True}


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why a finished step is not this run's step: its command's words that differ (``-`` the finished step's,
    ``+`` this run's), and the steps it read from that ran again since."""
    lines = []
    if recorded["command"] != current["command"]:
        lines.append("  its command differs from this run's (- the finished step's, + this run's):")
        lines += [f"    {line[0]} {line[2:]}" for line in difflib.ndiff(recorded["command"], current["command"])
                  if line[:1] in "-+"]
    if not recorded.get("legacy"):
        before, now = recorded.get("upstream", {}), current["upstream"]
        if set(before) != set(now):
            lines.append(f"  it read other steps' outputs (then: {sorted(before)}, now: {sorted(now)})")
        else:
            lines += [f"  the step that wrote {key} ran again after this step finished" for key in sorted(now)
                      if before[key] != now[key]]
    return lines


def run_step(driver: str, name: str, command: list[str], log: Path, done: Path, *, directory: Path | None = None,
             prefix: int = 1, upstream: Sequence[Path] = ()) -> None:
    """One step of a multi-job driver (``paper``, ``self-play-loop``) as its own process, unless it already finished
    with this command (a re-run continues where a stopped run ended); its output goes to ``log``.

    ``directory`` is the step's own directory (default: ``done``'s), named in messages; ``prefix`` the number of
    leading words of ``command`` that only say how it runs (interpreter, launcher); ``upstream`` the done files of
    the steps whose outputs it reads."""
    directory = directory or done.parent
    marker = marker_path(done)
    current = {"command": identity(command, prefix), "upstream": {str(p): fingerprint(p) for p in upstream}}
    log.parent.mkdir(parents=True, exist_ok=True)
    # ``done`` is the job's own last output, which some jobs write before they decide to fail (an unbalanced
    # evaluation writes its summary, then exits 1): a step counts as done only once it also exited 0 here.
    if done.exists() and marker.exists():
        why = differences(_recorded(marker, prefix), current)
        if not why:
            print(f"[{driver}] {name}: already done ({done})", file=sys.stderr, flush=True)
            return
        raise SystemExit(
            f"[{driver}] {name}: {directory} holds this step finished by another run, whose results would be "
            "reported as this run's:\n" + "\n".join(why) + "\nUse a new --output, or delete "
            f"{directory} (and the directories of the steps that read it) to run this step again.")
    if done.exists():
        print(f"[{driver}] {name}: {done} exists but the step did not succeed; running it again",
              file=sys.stderr, flush=True)
    full = list(command)
    print(f"[{driver}] {name}: {shlex.join(full)}\n[{driver}]   log: {log}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(log, "ab") as out:
        code = subprocess.run(full, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if code != 0:
        raise SystemExit(f"[{driver}] {name} failed (exit {code}); see {log}")
    if not done.exists():
        raise SystemExit(f"[{driver}] {name}: the job exited 0 but did not write {done}, the file that marks it "
                         f"done; see {log}")
    write_text_atomic(marker, json.dumps({**current, "run": uuid.uuid4().hex,
                                          "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")
    print(f"[{driver}] {name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
