"""Live progress of a running job: the stage counters, read while the job runs.

Every count a stage makes (``transforms.stage.StageBooks``) is a Beam ``Metrics`` counter, which Dataflow and Flink
show in their UIs, and is also added to this process's :data:`LIVE` counters. When the launcher sets
``INVERSE_INSTRUCT_PROGRESS_DIR`` (a local directory), a background thread of each process writes its counters
there as one small JSON file, atomically, about once a second. :class:`ProgressReporter`, in the launcher, sums
the files of every process on the machine (the DirectRunner in both modes, the portable runner's loopback
workers) and prints one line per stage on stderr: a live table on a terminal, plain lines in a log file.

Counter names are ``<stage>.<outcome>``: ``in``, ``out``, ``rejected.<reason>``, and for the engine
``engine.done.generate``, ``engine.done.score`` and ``engine.generated_tokens``; ``<stage>.requests.generate``
and ``<stage>.requests.score`` count the requests a stage planned, which gives the engine's "done of total".
"""
from __future__ import annotations

import atexit
import collections
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Mapping

PROGRESS_DIR_ENV = "INVERSE_INSTRUCT_PROGRESS_DIR"
FLUSH_SECONDS = 1.0


class LiveCounters:
    """This process's counters; thread safe, flushed to the progress directory by a daemon thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: collections.Counter = collections.Counter()
        self._dirty = False
        self._thread: threading.Thread | None = None
        self._started = time.time()

    def add(self, name: str, n: float = 1) -> None:
        with self._lock:
            self._values[name] += n
            self._dirty = True
        if self._thread is None and os.environ.get(PROGRESS_DIR_ENV):
            self._start()

    def reset(self) -> None:
        """Start from zero: a new job in this process must not show the counts of the one before."""
        with self._lock:
            self._values.clear()
            self._dirty = True

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="progress-flush", daemon=True)
            self._thread.start()
        atexit.register(self.flush)

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        directory = os.environ.get(PROGRESS_DIR_ENV)
        with self._lock:
            if not directory or not self._dirty:
                return
            values, self._dirty = dict(self._values), False
        name = f"{socket.gethostname()}-{os.getpid()}.json"
        tmp = os.path.join(directory, f".{name}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(values, f)
            os.replace(tmp, os.path.join(directory, name))
        except OSError:  # the launcher removed the directory: the job is over
            pass


LIVE = LiveCounters()


def read_progress(directory: str) -> dict[str, float]:
    """The sum of every process's counters in ``directory``."""
    total: collections.Counter = collections.Counter()
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith(".")]
    except OSError:
        return {}
    for name in names:
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                total.update(json.load(f))
        except (OSError, ValueError):
            continue  # being replaced right now: the next read gets it
    return dict(total)


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def stage_rows(counters: Mapping[str, float], order: list[str] | None = None) -> list[tuple[str, dict[str, float]]]:
    """``(stage, {"in", "out", "rejected"})`` for every stage with counts, in ``order`` first."""
    stages: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"in": 0, "out": 0, "rejected": 0})
    for name, value in counters.items():
        stage, _, outcome = name.rpartition(".")
        if outcome in ("in", "out") and stage and not stage.startswith("engine"):
            stages[stage][outcome] += value
        elif ".rejected." in name:
            stages[name.split(".rejected.")[0]]["rejected"] += value
    known = [s for s in (order or []) if s in stages]
    return [(s, stages[s]) for s in known + sorted(set(stages) - set(known))]


def engine_line(counters: Mapping[str, float], elapsed: float, engine_since: float | None,
                engine_last: float | None = None) -> str | None:
    """Requests done of planned, tokens per second and an ETA from the rate while the engine was busy (from the
    first answered request to the latest); None before any request."""
    done_g, done_s = counters.get("engine.done.generate", 0), counters.get("engine.done.score", 0)
    planned_g = sum(v for k, v in counters.items() if k.endswith(".requests.generate"))
    planned_s = sum(v for k, v in counters.items() if k.endswith(".requests.score"))
    if not (done_g or done_s or planned_g or planned_s):
        return None
    tokens = counters.get("engine.generated_tokens", 0)
    busy = ((engine_last if engine_last is not None else elapsed) - engine_since) if engine_since is not None else 0.0
    parts = [f"generate {int(done_g)}/{int(planned_g)}" if planned_g else f"generate {int(done_g)}"]
    if planned_s or done_s:
        parts.append(f"judge {int(done_s)}/{int(planned_s)}")
    parts.append(f"{int(tokens):,} tokens" + (f" ({tokens / busy:.0f}/s)" if busy > 1 and tokens else ""))
    done, planned = done_g + done_s, planned_g + planned_s
    if busy > 1 and done and planned > done:
        parts.append(f"ETA {_fmt_duration(busy * (planned - done) / done)} (of the requests planned so far)")
    return "engine: " + ", ".join(parts)


def progress_lines(counters: Mapping[str, float], elapsed: float, engine_since: float | None,
                   order: list[str] | None = None, engine_last: float | None = None) -> list[str]:
    lines = [f"[{_fmt_duration(elapsed)}]"]
    for stage, c in stage_rows(counters, order):
        lines.append(f"  {stage:<22} in {int(c['in']):>8,}  out {int(c['out']):>8,}  rejected {int(c['rejected']):>7,}")
    engine = engine_line(counters, elapsed, engine_since, engine_last)
    if engine:
        lines.append("  " + engine)
    return lines


class ProgressReporter:
    """Prints the job's progress on stderr until ``stop``: a live table on a terminal (rich), plain lines every
    ``interval`` seconds otherwise (a log file, CI)."""

    def __init__(self, directory: str, *, interval: float | None = None, order: list[str] | None = None,
                 stream=None, force_plain: bool = False):
        self.directory = directory
        self.stream = stream or sys.stderr
        self.tty = (not force_plain) and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if interval is not None else (2.0 if self.tty else 10.0)
        self.order = order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-report", daemon=True)
        self._started = time.monotonic()
        self._engine_since: float | None = None
        self._engine_last: float | None = None
        self._engine_done = 0.0
        self.reports = 0

    def start(self) -> "ProgressReporter":
        self._thread.start()
        return self

    def _lines(self) -> list[str]:
        counters = read_progress(self.directory)
        elapsed = time.monotonic() - self._started
        done = counters.get("engine.done.generate", 0) + counters.get("engine.done.score", 0)
        if done > self._engine_done:
            if self._engine_since is None:
                self._engine_since = max(0.0, elapsed - self.interval)  # first seen within the last interval
            self._engine_done, self._engine_last = done, elapsed
        return progress_lines(counters, elapsed, self._engine_since, self.order, self._engine_last)

    def _run(self) -> None:
        if self.tty:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self.stream)
            with Live(Text("starting..."), console=console, refresh_per_second=1, transient=False) as live:
                while not self._stop.wait(self.interval):
                    live.update(Text("\n".join(self._lines())))
                    self.reports += 1
                live.update(Text("\n".join(self._lines())))
            return
        while not self._stop.wait(self.interval):
            lines = self._lines()
            print("\n".join(["progress " + lines[0], *lines[1:]]), file=self.stream, flush=True)
            self.reports += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def counters_snapshot() -> dict[str, Any]:
    """This process's counters (tests and diagnostics)."""
    return LIVE.snapshot()
