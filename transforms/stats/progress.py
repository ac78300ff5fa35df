"""Live progress of a running job: the stage counters, read while the job runs.

Every count a stage makes (``transforms.stage.StageBooks``) is a Beam ``Metrics`` counter, which Dataflow and Flink
show in their UIs, and is also added to this process's :data:`LIVE` counters. When the launcher sets
``INVERSE_INSTRUCT_PROGRESS_DIR`` (a local directory), a background thread of each process writes its counters
there as one small JSON file, atomically, about once a second. :class:`ProgressReporter`, in the launcher, sums
the files of every process on the machine (the DirectRunner in both modes, the portable runner's loopback
workers) and prints one line per stage on stderr: a live table on a terminal, plain lines in a log file.

Counter names are ``<stage>.<outcome>``: ``in``, ``out``, ``rejected.<reason>``, and for the engine
``engine.done.generate``, ``engine.done.score`` and ``engine.generated_tokens``; ``<stage>.requests.generate``
and ``<stage>.requests.score`` count the requests a stage planned, which gives the engine's "done of total";
``inference_cache.hits`` counts the requests answered without the engine, and ``inference_cache.hits.generate``
and ``inference_cache.hits.score`` the same by kind: a kind's "done" is its engine answers and its cache hits (a
resumed run's cached requests are answered, not pending), while the token rate is the engine's own. The engine
answers a whole batch at once, so the first answers come in a burst long after the first request:
:class:`EngineProgress` says how long the engine has had work without answering, and shows a rate and an ETA only
once they are measured over real work.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import json
import logging
import math
import os
import re
import shutil
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


# The Parquet writers count under ``write.<output directory>`` (``transforms.io.beam._WriteShard``): the writer of
# rejected/ makes ``write.rejected.rows``, which reads like a rejection by a stage named "write".
WRITER_PREFIX = "write."


def stage_rows(counters: Mapping[str, float], order: list[str] | None = None) -> list[tuple[str, dict[str, float]]]:
    """``(stage, {"in", "out", "rejected"})`` for every stage with counts, in ``order`` first."""
    stages: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"in": 0, "out": 0, "rejected": 0})
    for name, value in counters.items():
        if name.startswith(WRITER_PREFIX):  # files, rows and bytes written, not a stage's records
            continue
        stage, _, outcome = name.rpartition(".")
        if outcome in ("in", "out") and stage and not stage.startswith("engine"):
            stages[stage][outcome] += value
        elif ".rejected." in name:
            stages[name.split(".rejected.")[0]]["rejected"] += value
    known = [s for s in (order or []) if s in stages]
    return [(s, stages[s]) for s in known + sorted(set(stages) - set(known))]


# A rate measured over less work than this is noise: the engine answers a whole batch at once, so the first
# answers arrive in a burst after the engine's start, and a rate timed from them is several times the real one.
MIN_RATE_SECONDS = 10.0
KINDS = (("generate", "generate"), ("score", "judge"))  # (counter suffix, what the line calls it)


class _Kind:
    """One kind of request (generate or score) as the reporter saw it over time."""

    def __init__(self):
        self.busy = 0.0  # seconds during which requests of this kind were planned and not yet answered
        self.done = 0.0  # answered by the engine
        self.answered = 0.0  # by the engine or from the inference cache
        self.outstanding = False
        self.first_done: float | None = None  # answers at the first report that saw some
        self.first_busy = 0.0  # busy seconds at that report


class EngineProgress:
    """The engine's rate and ETA, from the counters seen at each report.

    The clock of a kind of request runs while some of them are planned and unanswered (from the report that first
    sees them planned, counted from the report before it, so work is never timed as shorter than it was). The token
    rate is the tokens over that time: it includes the engine's start and is shown only after
    :data:`MIN_RATE_SECONDS` of it. The ETA needs answers at two reports at least: its rate counts only what was
    answered after the first answers and the time since, so neither the engine's start nor the first batch's burst
    decides it."""

    def __init__(self, started: float = 0.0):
        self._last = started
        self.kinds = {suffix: _Kind() for suffix, _ in KINDS}

    def observe(self, counters: Mapping[str, float], now: float) -> None:
        dt, self._last = max(0.0, now - self._last), now
        unanswered = _unanswered(counters)
        for suffix, kind in self.kinds.items():
            planned = _planned(counters, suffix)
            done, answered = counters.get(f"engine.done.{suffix}", 0), _answered(counters, suffix)
            outstanding = planned > answered and unanswered > 0
            if outstanding or kind.outstanding:
                kind.busy += dt
            kind.outstanding = outstanding
            if done > kind.done and kind.first_done is None:
                kind.first_done, kind.first_busy = done, kind.busy
            kind.done = max(kind.done, done)
            kind.answered = max(kind.answered, answered)

    def token_rate(self, counters: Mapping[str, float]) -> float | None:
        """Generated tokens per second of generating, or None while that is not yet meaningful."""
        tokens, busy = counters.get("engine.generated_tokens", 0), self.kinds["generate"].busy
        return tokens / busy if tokens and busy >= MIN_RATE_SECONDS else None

    def eta(self, counters: Mapping[str, float], suffix: str) -> float | None:
        """Seconds until this kind's planned requests are answered, or None while no honest estimate exists. The
        rate is the engine's answers only: the cache's come at once and say nothing of what is left."""
        kind = self.kinds[suffix]
        remaining = min(_planned(counters, suffix) - max(kind.answered, _answered(counters, suffix)),
                        _unanswered(counters))
        if kind.first_done is None or remaining <= 0:
            return None
        answered, seconds = kind.done - kind.first_done, kind.busy - kind.first_busy
        if answered <= 0 or seconds < MIN_RATE_SECONDS:
            return None
        return remaining * seconds / answered


def _planned(counters: Mapping[str, float], suffix: str) -> float:
    return sum(v for k, v in counters.items() if k.endswith(f".requests.{suffix}"))


def _cache_hits(counters: Mapping[str, float], suffix: str) -> float:
    return counters.get(f"inference_cache.hits.{suffix}", 0)


def _answered(counters: Mapping[str, float], suffix: str) -> float:
    """This kind's requests answered by the engine or from the inference cache."""
    return counters.get(f"engine.done.{suffix}", 0) + _cache_hits(counters, suffix)


def _unkinded_hits(counters: Mapping[str, float]) -> float:
    """Cache hits of no known kind: the total ``inference_cache.hits`` beyond the per-kind counters (counters of
    a release that counted the total only)."""
    return max(0.0, counters.get("inference_cache.hits", 0) - sum(_cache_hits(counters, s) for s, _ in KINDS))


def _unanswered(counters: Mapping[str, float]) -> float:
    """Requests planned and answered neither by the engine nor from the inference cache."""
    return sum(_planned(counters, suffix) - _answered(counters, suffix) for suffix, _ in KINDS) - \
        _unkinded_hits(counters)


def engine_line(counters: Mapping[str, float], engine: EngineProgress | None = None) -> str | None:
    """Requests answered of planned per kind (by the engine or from the inference cache, whose share is said),
    the engine's tokens with their rate, and an ETA, each only once it means something (:class:`EngineProgress`);
    None before any request. A kind whose planned requests are all answered never waits for the engine."""
    engine = engine or EngineProgress()
    hits = _unkinded_hits(counters)
    parts, waiting, etas = [], False, []
    for suffix, label in KINDS:
        planned, done = _planned(counters, suffix), _answered(counters, suffix)
        if not (planned or done):
            continue
        text = f"{label} {int(done)}/{int(planned)}" if planned else f"{label} {int(done)}"
        cached, notes = _cache_hits(counters, suffix), []
        if cached:
            notes.append(f"{int(cached):,} from the inference cache")
        busy = engine.kinds[suffix].busy
        # busy: some are unanswered (by the cache too); the engine has answered none of this kind
        if planned > done and _unanswered(counters) > 0 and not counters.get(f"engine.done.{suffix}", 0) \
                and busy > 0:
            notes.append(f"{'no engine answers' if cached else 'no answers'} yet after {_fmt_duration(busy)}")
            waiting = True
        if notes:
            text += f" ({'; '.join(notes)})"
        parts.append(text)
        eta = engine.eta(counters, suffix)
        if eta is not None:
            etas.append(f"{label} ETA {_fmt_duration(eta)}")
    if not parts:
        return None
    tokens = counters.get("engine.generated_tokens", 0)
    if tokens:
        rate = engine.token_rate(counters)
        parts.append(f"{int(tokens):,} tokens" + (
            f" ({rate:.0f}/s over {_fmt_duration(engine.kinds['generate'].busy)})" if rate else ""))
    if hits:
        parts.append(f"{int(hits):,} answered from the inference cache")
    if etas:
        parts.append(", ".join(etas) + " (of the requests planned so far)")
    line = "engine: " + ", ".join(parts)
    if waiting and not tokens and not counters.get("engine.done.score", 0):
        line += "; the engine starts on its first batch, then answers whole batches at once"
    return line


def progress_lines(counters: Mapping[str, float], elapsed: float, engine: EngineProgress | None = None,
                   order: list[str] | None = None) -> list[str]:
    lines = [f"[{_fmt_duration(elapsed)}]"]
    for stage, c in stage_rows(counters, order):
        lines.append(f"  {stage:<22} in {int(c['in']):>8,}  out {int(c['out']):>8,}  rejected {int(c['rejected']):>7,}")
    line = engine_line(counters, engine)
    if line:
        lines.append("  " + line)
    if len(lines) == 1:
        lines.append("  no records counted yet: the runner is starting the job and reading its input")
    return lines


def check_interval(seconds: float) -> float:
    """``seconds`` if it is a usable time between reports; else ValueError. 0, a negative number or nan would
    report in a busy loop (100k lines in a few seconds), inf would make the wait overflow."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"the progress interval must be a positive number of seconds, got {seconds}")
    return seconds


def interval_argument(text: str) -> float:
    """argparse type of ``--progress-interval``: a finite number of seconds above 0."""
    try:
        return check_interval(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None


# The launcher's progress directory (``beam_pipelines.launch.run_timed``) is tempfile.mkdtemp(prefix=...) with this
# prefix; the reporter marks it with its process, so that a later job can tell the directory of a killed one.
PROGRESS_DIR_PREFIX = "inverse-instruct-progress-"


def mark_progress_dir(directory: str) -> None:
    """Name this host and process as the owner of ``directory`` (a hidden file: ``read_progress`` skips it)."""
    from transforms.io.spill import host_tag

    with open(os.path.join(directory, f".owner-{host_tag()}-{os.getpid()}"), "w", encoding="utf-8"):
        pass


def remove_orphaned_progress_dirs(parent: str) -> list[str]:
    """Remove the progress directories under ``parent`` whose owner process is gone (SIGKILL, SIGTERM: the launcher
    never reached its clean-up); returns their paths. As ``transforms.io.spill.remove_orphaned_spill_dirs``: only
    this host's are judged, an unmarked one (older releases, or one being created) is left alone, and a reused pid
    keeps its directory."""
    from transforms.io.spill import OWNER_PATTERN, owner_gone

    owner_mark, removed = re.compile(r"\.owner-" + OWNER_PATTERN), []
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(PROGRESS_DIR_PREFIX)]
    except OSError:
        return []
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            owners = [m for m in map(owner_mark.fullmatch, os.listdir(entry.path)) if m]
        except OSError:  # removed meanwhile, or not ours to read
            continue
        if owners and all(map(owner_gone, owners)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


class ProgressReporter:
    """Prints the job's progress on stderr until ``stop``: a live table on a terminal (rich), plain lines every
    ``interval`` seconds otherwise (a log file, CI)."""

    def __init__(self, directory: str, *, interval: float | None = None, order: list[str] | None = None,
                 stream=None, force_plain: bool = False):
        if interval is not None:
            check_interval(interval)
        self.directory = directory
        self.stream = stream or sys.stderr
        self.tty = (not force_plain) and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if interval is not None else (2.0 if self.tty else 10.0)
        self.order = order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-report", daemon=True)
        self._started = time.monotonic()
        self._engine = EngineProgress(self._started)
        self.reports = 0

    def start(self) -> "ProgressReporter":
        """Mark the directory as this process's, remove those of killed jobs next to it, start reporting."""
        try:
            mark_progress_dir(self.directory)
            orphans = remove_orphaned_progress_dirs(os.path.dirname(os.path.abspath(self.directory)))
        except OSError:  # the directory is gone: nothing will be reported, and nothing is worth failing the job
            orphans = []
        if orphans:
            logging.getLogger(__name__).info("removed %d progress directories of killed jobs", len(orphans))
        self._thread.start()
        return self

    def _lines(self) -> list[str]:
        counters = read_progress(self.directory)
        now = time.monotonic()
        self._engine.observe(counters, now)
        return progress_lines(counters, now - self._started, self._engine, self.order)

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
