"""Steps of the multi-job drivers (``inverse-instruct paper``, ``self-play-loop``): each job as its own process,
skipped when already finished. Light on purpose: a driver imports neither Beam nor torch.

A finished step leaves a marker next to the file that marks it done (``.<done>.step-ok``): the command it ran
(without the interpreter or launcher and ``--resume``), a fingerprint of the marker of every step whose output it
read, and an id of its own run. A re-run skips the step only when both still match; otherwise it refuses, naming
the difference, since the step's outputs would be reported as this run's. While a step runs, its lock file
(``.<log>.lock``, holding the host and pid) keeps a second driver out of its directory; the step runs in its own
process group, and SIGTERM, SIGINT and SIGHUP sent to the driver are forwarded to that group.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

# Arguments that say how a step continues, never what it computes.
IGNORED_ARGUMENTS = frozenset({"--resume"})
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# training/finetune.py's names (not imported: it imports torch): a checkpoint every rank finished holds
# CHECKPOINT_MARKER, a finished stage STAGE_MARKER.
CHECKPOINT_MARKER = "COMPLETE"
STAGE_MARKER = "COMPLETE.json"


class DriverParser(argparse.ArgumentParser):
    """A driver's parser: a bad argument is two lines (the error and where the options are listed), exit 2, as the
    jobs say it, not argparse's whole usage block first."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\nSee `{self.prog} --help` for the options.\n")


class DriverRefusal(SystemExit):
    """A driver refusing to go on before its next step (the step is another run's, another driver holds it, the
    training configuration would fail): exit code 2, as for the jobs' configuration errors; ``refusals_exit_2``
    prints the message. A failed step stays a plain ``SystemExit(message)``: exit 1."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.code = 2


def refusals_exit_2(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a driver's ``main``: a ``DriverRefusal`` prints its message on stderr, then ends the process with 2."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except DriverRefusal as refusal:
            print(refusal.message, file=sys.stderr, flush=True)
            raise

    return wrapped


def marker_path(done: Path) -> Path:
    return done.parent / f".{done.name}.step-ok"


def lock_path(log: Path) -> Path:
    return log.parent / f".{log.name}.lock"


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


def _is_flag(word: str) -> bool:
    """An option's name (``--limit``, ``-m``, ``--limit=8``), not a value such as ``-1`` or ``-0.5``."""
    return word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-\d[\d.eE+-]*", word)


def option_units(command: Sequence[str]) -> list[tuple[str, str]]:
    """A command's words grouped as (option, what the command says): a flag with its value (``--limit 8`` and
    ``--limit=8`` both under ``--limit``), a flag without one, or a lone word (its own key)."""
    units: list[tuple[str, str]] = []
    i = 0
    while i < len(command):
        word = command[i]
        if _is_flag(word):
            name, sep, _ = word.partition("=")
            if not sep and i + 1 < len(command) and not _is_flag(command[i + 1]):
                units.append((name, f"{word} {shlex.quote(command[i + 1])}"))
                i += 2
                continue
            units.append((name, word))
        else:
            units.append((word, word))
        i += 1
    return units


def command_differences(before: Sequence[str], now: Sequence[str]) -> list[str]:
    """The options of two commands that differ, each named: ``--limit 8 -> --limit 9`` for an option whose value
    changed, ``- --x 1`` for one only the first has, ``+ --x 1`` for one only the second has."""
    old, new = option_units(before), option_units(now)
    lines = []
    matcher = difflib.SequenceMatcher(a=[shown for _, shown in old], b=[shown for _, shown in new], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed, added = list(old[i1:i2]), list(new[j1:j2])
        for key, shown in list(removed):  # the same option on both sides, in order: its value changed
            match = next((unit for unit in added if unit[0] == key), None)
            if match is not None and _is_flag(key):
                lines.append(f"{shown} -> {match[1]}")
                removed.remove((key, shown))
                added.remove(match)
        lines += [f"- {shown}" for _, shown in removed] + [f"+ {shown}" for _, shown in added]
    return lines


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why a finished step is not this run's step: its command's options that differ, each named
    (``--limit 8 -> --limit 9``; ``-`` only the finished step's, ``+`` only this run's), and the steps it read
    from that ran again since."""
    lines = []
    if recorded["command"] != current["command"]:
        lines.append("  its command differs from this run's (the finished step's -> this run's; - only the "
                     "finished step's, + only this run's):")
        lines += [f"    {line}" for line in command_differences(recorded["command"], current["command"])]
    if not recorded.get("legacy"):
        before, now = recorded.get("upstream", {}), current["upstream"]
        if set(before) != set(now):
            lines.append(f"  it read other steps' outputs (then: {sorted(before)}, now: {sorted(now)})")
        else:
            lines += [f"  the step that wrote {key} ran again after this step finished" for key in sorted(now)
                      if before[key] != now[key]]
    return lines


def _holder(fd: int) -> dict[str, Any] | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "null")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "unknown holder"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


@contextlib.contextmanager
def step_lock(path: Path, driver: str, name: str) -> Iterator[int]:
    """Hold the step's lock file while the step runs; yields its descriptor (the step's process inherits it, so the
    lock stays held while that process lives, even if the driver is killed outright).

    A second driver refuses while it is held. On this host the lock is held exactly while a process holds the
    file's ``flock``: a file left by a process that died is taken over. A file written by another host (a shared
    file system) is refused, since that process cannot be checked from here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            checked_by_flock = True
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DriverRefusal(
                f"[{driver}] {name}: another driver is running this step ({_describe(holder)}; lock {path}). Two "
                "copies in one directory would write over each other: wait for it to end, or stop it "
                "(SIGTERM to that driver stops its step too).") from None
        except OSError as err:  # a file system without flock: the recorded pid decides
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            checked_by_flock = False
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it between our open and our lock: take the new file
    holder = _holder(fd)
    if holder and holder.get("host") != host:
        os.close(fd)
        raise DriverRefusal(
            f"[{driver}] {name}: the step's lock {path} was taken by {_describe(holder)}, another machine, which "
            "this driver cannot check. If no driver runs this step there any more, remove the file and run again.")
    if holder and not checked_by_flock and holder.get("pid") != os.getpid() and _alive(int(holder.get("pid", 0))):
        os.close(fd)
        raise DriverRefusal(
            f"[{driver}] {name}: another driver is running this step ({_describe(holder)}; lock {path})")
    if holder:
        print(f"[{driver}] {name}: taking over the stale lock of {_describe(holder)} (that process is gone)",
              file=sys.stderr, flush=True)
    record = json.dumps({"host": host, "pid": os.getpid(),
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
    try:
        yield fd
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


HEARTBEAT_S = 60.0  # how often a running step says how long it has run and what its log said last


def last_log_line(log: Path, limit: int = 160) -> str:
    """The last non-empty line of ``log`` (its last 8 KB), at most ``limit`` characters; "" when there is none."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if len(lines[-1]) <= limit else lines[-1][:limit - 3] + "..."


def run_process(command: list[str], log: Path, keep_fds: Sequence[int] = (),
                heartbeat: Callable[[float], None] | None = None, every_s: float = HEARTBEAT_S
                ) -> tuple[int, int | None]:
    """Run ``command`` in its own session (process group), output appended to ``log``; SIGTERM, SIGINT and SIGHUP
    sent to this process meanwhile go to that group; ``heartbeat(seconds running)`` is called every ``every_s``
    while it runs. Returns (exit code, the first signal forwarded or None)."""
    received: list[int] = []
    proc: subprocess.Popen | None = None

    def forward(signum, _frame):
        received.append(signum)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                    start_new_session=True, pass_fds=tuple(keep_fds))
        if received:  # a signal that came before the process had its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, received[0])
        started = time.monotonic()
        while True:
            try:
                code = proc.wait(timeout=every_s if heartbeat is not None else None)
                break
            except subprocess.TimeoutExpired:
                heartbeat(time.monotonic() - started)
    finally:
        if proc is not None and proc.poll() is None:  # the driver itself failed while waiting
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code, (received[0] if received else None)


def run_step(driver: str, name: str, command: list[str], log: Path, done: Path, *, directory: Path | None = None,
             prefix: int = 1, upstream: Sequence[Path] = (),
             prepare: Callable[[], Sequence[str]] | None = None) -> None:
    """One step of a multi-job driver (``paper``, ``self-play-loop``) as its own process, unless it already finished
    with this command (a re-run continues where a stopped run ended); its output goes to ``log``.

    ``directory`` is the step's own directory (default: ``done``'s), named in messages; ``prefix`` the number of
    leading words of ``command`` that only say how it runs (interpreter, launcher); ``upstream`` the done files of
    the steps whose outputs it reads; ``prepare`` runs (under the step's lock) just before the step does and
    returns arguments to append."""
    directory = directory or done.parent
    marker = marker_path(done)
    current = {"command": identity(command, prefix), "upstream": {str(p): fingerprint(p) for p in upstream}}
    log.parent.mkdir(parents=True, exist_ok=True)
    with step_lock(lock_path(log), driver, name) as lock_fd:
        # ``done`` is the job's own last output, which some jobs write before they decide to fail (an unbalanced
        # evaluation writes its summary, then exits 1): a step counts as done only once it also exited 0 here.
        if done.exists() and marker.exists():
            why = differences(_recorded(marker, prefix), current)
            if not why:
                print(f"[{driver}] {name}: already done ({done})", file=sys.stderr, flush=True)
                return
            raise DriverRefusal(
                f"[{driver}] {name}: {directory} holds this step finished by another run, whose results would be "
                "reported as this run's:\n" + "\n".join(why) + "\nUse a new --output, or delete "
                f"{directory} (and the directories of the steps that read it) to run this step again.")
        if done.exists():
            print(f"[{driver}] {name}: {done} exists but the step did not succeed; running it again",
                  file=sys.stderr, flush=True)
        full = [*command, *(prepare() if prepare is not None else ())]
        print(f"[{driver}] {name}: {shlex.join(full)}\n[{driver}]   log: {log}", file=sys.stderr, flush=True)
        started = time.monotonic()
        def heartbeat(seconds: float) -> None:  # the step's own progress lines are in its log
            last = last_log_line(log)
            print(f"[{driver}] {name}: running for {int(seconds) // 60}m{int(seconds) % 60:02d}s"
                  + (f"; log: {last}" if last else ""), file=sys.stderr, flush=True)

        code, signum = run_process(full, log, keep_fds=(lock_fd,), heartbeat=heartbeat, every_s=HEARTBEAT_S)
        if signum is not None:
            print(f"[{driver}] {name}: stopped by {signal.Signals(signum).name} (sent on to the step's processes); "
                  "run the same command again to continue", file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)
        if code != 0:
            raise SystemExit(f"[{driver}] {name} failed (exit {code}); see {log}")
        if not done.exists():
            raise SystemExit(f"[{driver}] {name}: the job exited 0 but did not write {done}, the file that marks it "
                             f"done; see {log}")
        write_text_atomic(marker, json.dumps({**current, "run": uuid.uuid4().hex,
                                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")
    print(f"[{driver}] {name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ the drivers' checks

def check_step_command(parser, flag: str, argv: Sequence[str], job) -> None:
    """``parser.error`` naming ``flag`` (the driver's pass-through option, e.g. ``--self-play-args``) when the
    command a step will run fails its job's checks (``launch.check_job_command``)."""
    from beam_pipelines.launch import check_job_command, user_error_classes

    try:
        check_job_command(argv, job)
    except user_error_classes() as err:
        parser.error(f"{flag}: {err}")


def require_local_output(parser, output: str) -> None:
    """The drivers keep their state (markers, locks, logs, summaries) in a local directory."""
    if "://" in output:
        parser.error(f"--output {output}: a driver keeps its steps' state in a local directory, so --output must be "
                     "a local path (the jobs' inputs, e.g. --input, may be URLs)")
    from beam_pipelines.launch import JobConfigError, check_output_location

    try:
        check_output_location(output)  # an empty one or the root would put the steps' markers and logs in / or .
    except JobConfigError as e:
        parser.error(str(e))


def train_resume_arguments(driver: str, train: Path) -> list[str]:
    """``--resume`` when the fine-tune's directory holds something to continue from (a finished stage, a
    checkpoint, a stage's final model); a directory of a fine-tune that stopped before its first checkpoint is
    removed instead, so that a corrected configuration starts afresh (the fine-tune refuses to resume with
    another one)."""
    if not train.exists():
        return []
    if any(train.glob(f"stage-*/{STAGE_MARKER}")) or any(train.glob("stage-*/checkpoint-*")) or any(
            train.glob("stage-*/final")):
        # Incomplete checkpoints (killed while saving) are removed by the fine-tune when it resumes.
        return ["--resume"]
    print(f"[{driver}] {train} holds no checkpoint (the fine-tune stopped before its first one): removing it and "
          "starting the fine-tune afresh", file=sys.stderr, flush=True)
    shutil.rmtree(train)
    return []


def launcher_processes(launcher: str) -> int | None:
    """How many training processes ``launcher`` starts: ``--nproc_per_node``/``--nproc-per-node`` times
    ``--nnodes`` (torchrun's defaults 1); 1 without a launcher; None when a count is not a number (``gpu``,
    ``auto``, a node range)."""
    words = shlex.split(launcher)
    counts = {"nproc": "1", "nnodes": "1"}
    names = {"--nproc_per_node": "nproc", "--nproc-per-node": "nproc", "--nnodes": "nnodes"}
    for i, word in enumerate(words):
        key, sep, value = word.partition("=")
        if key in names:
            counts[names[key]] = value if sep else (words[i + 1] if i + 1 < len(words) else "")
    try:
        return int(counts["nproc"]) * int(counts["nnodes"])
    except ValueError:
        return None


def train_overrides(train_args: str) -> tuple[str | None, list[str]]:
    """The ``--config`` and ``--set`` overrides among a driver's ``--train-args``, as the fine-tune reads them."""
    words = shlex.split(train_args)
    config, sets = None, []
    for i, word in enumerate(words):
        key, sep, value = word.partition("=")
        if key in ("--set", "--config"):
            value = value if sep else (words[i + 1] if i + 1 < len(words) else "")
            if key == "--set":
                sets.append(value)
            else:
                config = value
    return config, sets


def check_train_batch(driver: str, config: str | Path, overrides: Sequence[str], train_args: str,
                      launcher: str) -> None:
    """Fail before any step when the fine-tune would fail at its start: a config that does not load, or a global
    batch that is not a multiple of the per-device batch times the launcher's processes."""
    import yaml

    from training.config import load_config  # yaml only

    chosen, sets = train_overrides(train_args)
    try:
        cfg = load_config(chosen or config, [*overrides, *sets])
    except (OSError, ValueError, TypeError, KeyError, IndexError, yaml.YAMLError) as err:
        raise DriverRefusal(f"[{driver}] the training configuration does not load (--train-args {train_args!r}): "
                         f"{err}") from None
    processes = launcher_processes(launcher)
    if processes is None:
        print(f"[{driver}] cannot tell how many processes --train-launcher {launcher!r} starts: the global batch is "
              "checked when the fine-tune starts", file=sys.stderr, flush=True)
        return
    if cfg.per_device_batch_size == "auto":  # a divisor of the global batch's share per process, if it has one
        if cfg.global_batch_size % processes == 0:
            return
        raise DriverRefusal(
            f"[{driver}] the fine-tune would fail at its start: global_batch_size {cfg.global_batch_size} is not a "
            f"multiple of {processes} processes (--train-launcher {launcher!r}). Change global_batch_size in "
            "--train-args, or start fewer processes.")
    per_step = cfg.per_device_batch_size * processes
    if cfg.global_batch_size % per_step == 0:
        return
    larger = -(-cfg.global_batch_size // per_step) * per_step
    fits = [d for d in range(cfg.per_device_batch_size, 0, -1) if cfg.global_batch_size % (d * processes) == 0]
    fixes = [f'--set global_batch_size={larger}']
    if fits:
        fixes.append(f"--set per_device_batch_size={fits[0]}")
    raise DriverRefusal(
        f"[{driver}] the fine-tune would fail at its start: global_batch_size {cfg.global_batch_size} is not a "
        f"multiple of per_device_batch_size {cfg.per_device_batch_size} x {processes} processes "
        f"(--train-launcher {launcher!r}). Add {' or '.join(repr(f) for f in fixes)} to --train-args, or start "
        "fewer processes.")
