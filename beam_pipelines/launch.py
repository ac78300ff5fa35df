"""What every job's launcher shares: its options (checked before any work), the runner default, a timed run, the
time spent inside the engine, ``--help`` and ``main``.

A job declares the ``PipelineOptions`` classes it reads (:class:`JobSpec`). An option that neither those
classes nor Beam itself (every runner's options included) defines stops the job before any work, with a "did
you mean" suggestion: ``--limt 5`` must not silently process the whole corpus on a GPU cluster.

A mistake in the arguments or the inputs they name (:class:`JobConfigError`, and the configuration errors of
``user_error_classes``) ends the job with one line, ``<job>: error: <message>``, and exit code 2; the job's own
checks (``JobSpec.check``) find most of them before ``run.json`` is written and before any engine starts. Any
other exception is a bug and keeps its traceback. Ctrl-C ends the job with a short note on resuming and exit
code 130.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A job: its subcommand name, its description (the module docstring) and the option classes it reads."""

    name: str
    description: str | None
    option_classes: tuple[type[PipelineOptions], ...]
    profiles: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # --profile NAME -> its flags
    # Option classes the job reads only a few options of (their dests): the others are unknown options to it,
    # refused like a typo, instead of being accepted, recorded in run.json and ignored.
    reads_only: Mapping[type[PipelineOptions], frozenset[str]] = dataclasses.field(default_factory=dict)
    # The job's checks of its parsed options and of the inputs they name (files exist, values in range), run by
    # ``pipeline_options`` before run.json is written: each raises JobConfigError (see ``argument_errors``).
    check: Callable[[PipelineOptions], None] | None = None
    # The job's engine requests, estimated before it starts (``(options, enough)`` -> a ``transforms.instruct.
    # workload.RequestEstimate`` or ``runners.engines.compile_choice.WorkEstimate``, or None when it makes none), in
    # the unit of its kind of work (``workload``): vLLM on a CPU compiles when they reach the size from which
    # compiling pays there (``runners.options.choose_compilation``).
    requests: Callable[[PipelineOptions, int], Any] | None = None
    workload: str = "instruct"

    @property
    def prog(self) -> str:
        return f"inverse-instruct {self.name}"


class JobConfigError(ValueError):
    """A mistake in the job's arguments or in the inputs they name, found before any work: ``job_main`` prints
    ``<job>: error: <message>`` and exits 2, without a traceback."""


class UnknownOptionError(JobConfigError):
    """An option the job does not know; raised before the pipeline is built."""


class ArgumentsError(JobConfigError):
    """A value argparse refuses (an invalid choice, a number that is not one, an option without its value)."""


class RunConflictError(JobConfigError):
    """The output directory holds a run made with other arguments; raised before any work."""


def user_error_classes() -> tuple[type[BaseException], ...]:
    """Exceptions that report a mistake in the job's configuration or environment, not a bug: ``job_main`` prints
    their message alone. Besides ``JobConfigError``: a corpus that cannot be read as configured (found when the
    pipeline is built, or by a worker for files after the first), a model that is not there, a sandbox that
    cannot run here (both found when the pipeline is built), an output that cannot be written (a full disk), and a
    path whose scheme needs a file system package that is not installed (``gs://`` without gcsfs)."""
    from runners.model_resolution import ModelNotAvailableError
    from transforms.execute.isolation import IsolationUnavailable
    from transforms.io.filesystems import FilesystemUnavailable
    from transforms.io.output_errors import OutputWriteError
    from transforms.io.readers import CorpusConfigError

    return (JobConfigError, CorpusConfigError, ModelNotAvailableError, IsolationUnavailable, OutputWriteError,
            FilesystemUnavailable)


@contextlib.contextmanager
def argument_errors() -> Iterator[None]:
    """Around a parser of the job's options (``method_config``, ``resolve_preset``, ...), whose ``ValueError`` says
    which argument is wrong: that error becomes a ``JobConfigError``. Never around work: there a ValueError is a
    bug and keeps its traceback."""
    try:
        yield
    except JobConfigError:
        raise
    except ValueError as err:
        raise JobConfigError(str(err)) from err


RUN_FILE = "run.json"
# Held (flock) by the job writing the directory, for as long as it runs: a second job into the same directory stops
# at once instead of mixing its outputs and cache with the first's, and `report DIR` tells a running job from a
# killed one. The file stays; only the lock on it says a job is running.
RUN_LOCK = "run.lock"
_HELD_LOCKS: dict[str, int] = {}  # lock path -> the descriptor holding it (this process's, kept to its end)
# Engine options that change how fast the engine answers, never what: runners.options.result_settings leaves them
# out of the inference cache's key (runners/options.py names no such list; tests/beam_pipelines/test_launch.py
# checks this one against result_settings).
SPEED_ONLY_ENGINE_OPTIONS = frozenset({
    "kv_cache_gb", "gpu_memory_utilization", "max_num_seqs", "tensor_parallel_size", "vllm_host",
    "cpu_runtime_preload", "model_cache", "torch_threads",
})
# Options that change how a job runs, never what it writes: a re-run may change them freely.
NON_RESULT_OPTIONS = frozenset({
    "output", "quiet", "verbose", "progress_interval", "no_cache", "inference_cache", "engine_load_log",
    "sandbox_workers", "worker_torch_threads", "min_batch_size", "max_batch_size", "accelerator",
    "spill_dir",  # where records wait during a shuffle, removed when the job ends
}) | SPEED_ONLY_ENGINE_OPTIONS


def beam_option_classes() -> list[type[PipelineOptions]]:
    """Every ``PipelineOptions`` subclass Beam itself defines (standard, runner, worker and cloud options)."""
    import apache_beam.options.pipeline_options  # noqa: F401  (defines the runners' option classes)

    found: list[type[PipelineOptions]] = []

    def walk(cls):
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("apache_beam.") and sub not in found:
                found.append(sub)
            walk(sub)

    walk(PipelineOptions)
    return found


class _JobParser(argparse.ArgumentParser):
    """The job's parser: its usage line is short (``--help`` lists the options; argparse's own usage line would
    name all of Beam's ~200 flags), and a refused value raises ``ArgumentsError`` instead of exiting."""

    def error(self, message: str):
        raise ArgumentsError(f"{message}\nSee `{self.prog} --help` for the options of this job.")


def _parser(job: JobSpec, with_beam: bool = True) -> argparse.ArgumentParser:
    parser = _JobParser(prog=job.prog, usage="%(prog)s [options]", description=job.description,
                        allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                        conflict_handler="resolve")
    for cls in job.option_classes:
        only = job.reads_only.get(cls)
        cls._add_argparse_args(parser if only is None else _OnlyDests(parser, only))
    if with_beam:
        beam_group = parser.add_argument_group("Apache Beam (runner, workers, cloud); see Beam's documentation")
        for cls in beam_option_classes():
            cls._add_argparse_args(_GroupAdapter(parser, beam_group))
    return parser


class _OnlyDests:
    """Lets an options class add only the flags whose dest is in ``dests`` (``JobSpec.reads_only``)."""

    def __init__(self, target, dests: frozenset[str]):
        self._target, self._dests = target, dests

    def add_argument(self, *args, **kwargs):
        flag = next((a for a in args if a.startswith("--")), args[0])
        dest = kwargs.get("dest") or flag.lstrip("-").replace("-", "_")
        if dest in self._dests:
            return self._target.add_argument(*args, **kwargs)
        return None

    def add_argument_group(self, *args, **kwargs):
        return _OnlyDests(self._target.add_argument_group(*args, **kwargs), self._dests)

    def add_mutually_exclusive_group(self, *args, **kwargs):
        return _OnlyDests(self._target.add_mutually_exclusive_group(*args, **kwargs), self._dests)


class _GroupAdapter:
    """Lets a Beam options class add its flags into one help group (it calls add_argument on a parser)."""

    def __init__(self, parser: argparse.ArgumentParser, group):
        self._parser, self._group = parser, group

    def add_argument(self, *args, **kwargs):
        return self._group.add_argument(*args, **kwargs)

    def add_argument_group(self, *args, **kwargs):
        return self

    def add_mutually_exclusive_group(self, *args, **kwargs):
        return self

    def add_value_provider_argument(self, *args, **kwargs):
        # Beam's templated options; here they are plain string options.
        kwargs.pop("type", None)
        return self._group.add_argument(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def check_known_options(argv: Sequence[str], job: JobSpec) -> None:
    """Raise :class:`UnknownOptionError` naming every option neither the job nor Beam defines, and
    :class:`ArgumentsError` for a value argparse refuses."""
    parser = _parser(job)
    _, unknown = parser.parse_known_args(list(argv))
    flags = [arg for arg in unknown if arg.startswith("-") and arg != "--"]
    if not flags:
        return
    known = sorted({s for action in parser._actions for s in action.option_strings if s.startswith("--")})
    lines = []
    for flag in flags:
        name = flag.split("=", 1)[0]
        # compared without the leading dashes, which every flag shares (--limt was "close" to --quiet)
        bare = {k.lstrip("-"): k for k in known}
        close = [bare[m] for m in difflib.get_close_matches(name.lstrip("-"), list(bare), n=2, cutoff=0.6)]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        lines.append(f"  {name}{hint}")
    raise UnknownOptionError(f"unknown option{'s' if len(lines) > 1 else ''}:\n" + "\n".join(lines)
                             + f"\nSee `{job.prog} --help` for the options of this job.")


def path_exists(path: str) -> bool | None:
    """Whether a file or directory is at ``path`` (any fsspec URL); None when this process cannot tell (a store
    it has no access to): the job then finds out when it reads it."""
    if "://" not in path:
        return os.path.exists(path)  # as the job will open it: no ``~`` expansion
    try:
        import fsspec

        fs, _, (base,) = fsspec.get_fs_token_paths(path)
        return bool(fs.exists(base))
    except Exception:  # no credentials, no network, an unknown scheme: not the place to report it
        return None


def require_paths(paths: Mapping[str, str]) -> None:
    """``JobConfigError`` naming every input (``{what: path}``) that is not there."""
    missing = [f"{what}: {path} does not exist" for what, path in paths.items() if path_exists(path) is False]
    if missing:
        raise JobConfigError("; ".join(missing))


def result_arguments(options: PipelineOptions, job: JobSpec) -> dict[str, Any]:
    """The values of the job's options that decide what it writes."""
    values: dict[str, Any] = {}
    for cls in job.option_classes:
        only = job.reads_only.get(cls)
        values.update({k: v for k, v in options.view_as(cls).get_all_options(current_only=True).items()
                       if only is None or k in only})
    return {k: v for k, v in sorted(values.items()) if k not in NON_RESULT_OPTIONS}


def holds_output(output: str) -> bool:
    """Whether ``output`` holds a file other than ``run.json`` and the logs (``logs/``): an output, a cache entry, a
    partial file. A directory without one is a run that stopped before its pipeline wrote anything (its inputs
    failed to open, its model was missing, Ctrl-C during start-up): another run may take it over."""
    if "://" in output:
        import fsspec

        fs, _, (base,) = fsspec.get_fs_token_paths(output)
        base = base.rstrip("/")
        try:
            names = [path[len(base) + 1:] if path.startswith(base + "/") else path for path in fs.find(base)]
        except FileNotFoundError:
            return False
    else:
        names = [os.path.relpath(os.path.join(directory, name), output).replace(os.sep, "/")
                 for directory, _, files in os.walk(output) for name in files]
    from transforms.stats.report import FAILED_NAME, REPORT_NAME

    not_outputs = {RUN_FILE, RUN_LOCK, FAILED_NAME, REPORT_NAME}  # a failed run's page says it wrote nothing else
    return any(name not in not_outputs and name.split("/")[0] != "logs" for name in names)


def check_output_location(output: str) -> None:
    """``JobConfigError`` for an ``--output`` that names no directory of its own: an empty one (an unset ``$OUT``;
    ``<output>/run.json`` would be ``/run.json``), a local file system's root, or a URL without a bucket. A bucket's
    root is a directory of its own."""
    what = None
    if not output.strip():
        what = "is empty"
    elif "://" in output:
        scheme, rest = output.split("://", 1)
        if scheme in ("file", "local"):
            if os.path.realpath(rest or "/") == os.path.realpath(os.sep):
                what = "is the root of the file system"
        elif not rest.strip("/"):
            what = "names no bucket or directory"
    elif os.path.realpath(output) == os.path.realpath(os.sep):
        what = "is the root of the file system"
    elif os.path.isfile(output):
        raise JobConfigError(f"--output {output!r} is a file, not a directory: give a directory (new, or one of an "
                             "earlier run of the same command), e.g. --output runs/<name>.")
    if what:
        raise JobConfigError(f"--output {output!r} {what}: the run would write run.json, its outputs and its cache "
                             "there. Give it a directory of its own, e.g. --output runs/<name>.")


@dataclasses.dataclass(frozen=True)
class PathOption:
    """How the launcher treats an option that names a path (``PATH_OPTIONS``)."""

    form: str = "path"  # "path"; "list": comma-separated paths (--input); "named": repeated NAME or NAME=PATH
    expand_user: bool = False  # a leading ``~`` is the home directory, as the code that opens the path takes it
    keywords: frozenset[str] = frozenset()  # values that name no path (``--spill-dir auto``, ``--preset chat``)
    # Jobs whose Beam workers open the path themselves (empty: the launcher reads it, e.g. into beam.Create); on
    # DataflowRunner such a path must be remote: the workers cannot read or write the launcher's disk.
    read_by_workers: frozenset[str] | None = frozenset()  # None: every job
    # The path is record provenance (``source_uri`` of every record read from it): kept as given where the workers
    # share this process's working directory (the local runners), so outputs do not depend on where the checkout is.
    provenance: bool = False


# Every option (by dest) that names a local file or directory, whichever job reads it. The launcher makes a local
# one (no URL scheme) absolute against its own working directory before the pipeline is built
# (``absolute_paths``): a Beam worker has a working directory of its own (a worker pool started elsewhere, a
# container), where a relative path names another file or none. ``--model`` is one only when it names a local
# model (``_local_model``), not a hub id or the embedded model; ``--preset`` only when it names a file.
PATH_OPTIONS: dict[str, PathOption] = {
    "output": PathOption(expand_user=True, read_by_workers=None),  # written through fsspec, which expands ``~``
    "input": PathOption(form="list", read_by_workers=frozenset({"generate"}), provenance=True),  # read by workers
    "source_tree": PathOption(read_by_workers=frozenset({"generate"}), provenance=True),
    "benchmark": PathOption(form="named", read_by_workers=frozenset({"generate"})),  # decontamination's index
    "problems": PathOption(),  # evaluate loads its problems here
    "p3_dir": PathOption(),
    "solve_prefix": PathOption(),
    "preset": PathOption(keywords=frozenset({"paper", "chat"})),  # transforms.instruct.prompts.BUILTIN_PRESETS
    "model": PathOption(expand_user=True),  # runners.model_resolution expands ``~``
    "model_cache": PathOption(expand_user=True),
    "inference_cache": PathOption(expand_user=True),  # runners.cache opens it through fsspec
    "spill_dir": PathOption(keywords=frozenset({"auto", "none"})),  # transforms.io.options.SPILL_AUTO, SPILL_NONE
    "engine_load_log": PathOption(),
}


def is_local_path(value: str) -> bool:
    """A path on this machine's file system: no URL scheme (``gs://``, ``memory://``...)."""
    return "://" not in value


def _local_model(model: str) -> bool:
    """Whether ``--model`` names a local model (a directory or a ``.gguf`` file, or a path that is none: its error
    then names the absolute path) rather than the embedded model or a hub id (``runners.model_resolution``)."""
    from runners.model_resolution import EMBEDDED_MODELS

    if not is_local_path(model) or model.lower() in EMBEDDED_MODELS:
        return False
    local = os.path.expanduser(model)
    return (os.path.isdir(local) or (os.path.isfile(local) and local.endswith(".gguf"))
            or os.path.isabs(local) or model.startswith((".", "~")))


def _preset_file(preset: str) -> bool:
    """Whether ``--preset`` names a file rather than a mistyped built-in name (``nosuch``: its error names it as
    given): it is there, or it reads as a path (a directory part or a YAML/JSON suffix)."""
    return (os.path.exists(preset) or "/" in preset or os.sep in preset
            or preset.lower().endswith((".yaml", ".yml", ".json")))


def _path_values(dest: str, value: Any) -> list[tuple[str, str]]:
    """The paths an option's value names, as (how to name it in a message, path), local or not."""
    spec = PATH_OPTIONS[dest]
    flag = "--" + dest.replace("_", "-")
    if value is None:
        return []
    if spec.form == "named":
        named = [v.split("=", 1) for v in value if "=" in v]
        return [(f"{flag} {name}", path) for name, path in named]
    if spec.form == "list":
        return [(flag, part.strip()) for part in str(value).split(",") if part.strip()]
    if value in spec.keywords or (dest == "model" and not _local_model(value)) or (
            dest == "preset" and not _preset_file(value)):
        return []
    return [(flag, str(value))]


def _absolute(dest: str, path: str) -> str:
    if not is_local_path(path):
        return path
    return os.path.abspath(os.path.expanduser(path) if PATH_OPTIONS[dest].expand_user else path)


def _job_path_options(options: PipelineOptions, job: JobSpec) -> Iterator[tuple[PipelineOptions, str, Any]]:
    """(the options' view that holds it, dest, value) of every ``PATH_OPTIONS`` entry the job reads."""
    for cls in job.option_classes:
        only = job.reads_only.get(cls)
        view = options.view_as(cls)
        for dest, value in view.get_all_options(current_only=True).items():
            if dest in PATH_OPTIONS and value is not None and (only is None or dest in only):
                yield view, dest, value


def absolute_paths(options: PipelineOptions, job: JobSpec) -> None:
    """Rewrite every local path option of the job (``PATH_OPTIONS``; ``--output``'s default ``runs/latest`` too)
    to an absolute path against this process's working directory, in place: the pipeline is built from these,
    its workers receive them, and run.json records them. Values with a URL scheme stay as they are, and so do the
    corpus's (``--input``, ``--source-tree``: every record's ``source_uri``) on the local runners, whose workers
    share this working directory."""
    shared_cwd = workers_share_cwd(options)
    for view, dest, value in _job_path_options(options, job):
        if PATH_OPTIONS[dest].provenance and shared_cwd:
            continue
        new = _absolute_value(dest, value)
        if new != value:
            setattr(view, dest, new)


def _absolute_value(dest: str, value: Any) -> Any:
    """``value`` of the path option ``dest`` with its local paths made absolute."""
    spec = PATH_OPTIONS[dest]
    if value is None:
        return value
    if spec.form == "named":
        return [v if "=" not in v else "{}={}".format(v.split("=", 1)[0], _absolute(dest, v.split("=", 1)[1]))
                for v in value]
    if spec.form == "list":
        return ",".join(_absolute(dest, part.strip()) if part.strip() else part for part in str(value).split(","))
    return _absolute(dest, str(value)) if _path_values(dest, value) else value


# Runners whose workers are this process or its children: they share its working directory.
LOCAL_RUNNERS = frozenset({"directrunner", "bundlebaseddirectrunner", "switchingdirectrunner"})


def runner_name(runner: Any, default: str = "DirectRunner") -> str:
    """``--runner`` (a name, a dotted path or a runner object) as a lower-case class name ending in ``runner``."""
    name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    name = (name or default).rsplit(".", 1)[-1].lower()
    return name if name.endswith("runner") else name + "runner"


def workers_share_cwd(options: PipelineOptions) -> bool:
    """Whether the job's workers run in this process's working directory: the local runners, or any runner with
    ``--environment_type=LOOPBACK`` (its workers are this process)."""
    from apache_beam.options.pipeline_options import PortableOptions

    return (runner_name(options.view_as(StandardOptions).runner) in LOCAL_RUNNERS
            or (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK")


def _is_dataflow(runner: Any) -> bool:
    return runner_name(runner, default="") in ("dataflowrunner", "testdataflowrunner")


def check_path_locations(options: PipelineOptions, job: JobSpec) -> None:
    """Before run.json and any work: on DataflowRunner, a ``JobConfigError`` for every path the workers open
    (``PathOption.read_by_workers``: ``--output`` in every job, the main job's ``--input``, ``--source-tree`` and
    ``--benchmark NAME=PATH``) that is on this machine's disk, and for a missing ``apache-beam[gcp]``; on any runner,
    ``FilesystemUnavailable`` for a path whose scheme needs a file system package that is not installed (``gs://``
    without gcsfs)."""
    from transforms.io.filesystems import check_filesystem

    paths = [(dest, what, path) for _, dest, value in _job_path_options(options, job)
             for what, path in _path_values(dest, value)]
    if _is_dataflow(options.view_as(StandardOptions).runner):
        local = [f"{what} {path!r}" for dest, what, path in paths if is_local_path(path)
                 and (PATH_OPTIONS[dest].read_by_workers is None or job.name in PATH_OPTIONS[dest].read_by_workers)]
        if local:
            raise JobConfigError(
                f"{'; '.join(local)} {'is a local path' if len(local) == 1 else 'are local paths'}, but "
                "DataflowRunner's workers cannot read or write this machine's disk: give a gs:// path "
                "(e.g. --output gs://BUCKET/runs/NAME).")
        try:
            from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
        except ImportError as err:
            raise JobConfigError(
                f"--runner DataflowRunner needs the apache-beam[gcp] package (Google Cloud's client libraries), which "
                f"is not installed here ({err}): pip install -e '.[gcp]'") from err
    for _, what, path in paths:
        if not is_local_path(path):
            check_filesystem(path, what)


def _with_absolute_paths(recorded: dict[str, Any]) -> dict[str, Any]:
    """A run.json record with its local path options made absolute against this process's working directory."""
    arguments = recorded.get("arguments", {})
    return {**recorded, "arguments": {k: _absolute_value(k, v) if k in PATH_OPTIONS else v
                                      for k, v in arguments.items()}}


def _read_run_file(output: str) -> tuple[dict[str, Any] | None, str | None]:
    """``<output>/run.json`` as a record of a job's arguments, or None and why it cannot say whose run the
    directory holds (missing, not JSON, not such a record)."""
    from transforms.io.filesystems import FilesystemUnavailable, read_text

    try:
        recorded = json.loads(read_text(f"{output}/{RUN_FILE}"))
    except FileNotFoundError:
        return None, f"no {RUN_FILE}"
    except FilesystemUnavailable:
        raise
    except (OSError, ValueError) as err:
        return None, f"an unreadable {RUN_FILE} ({type(err).__name__}: {(str(err).splitlines() or [''])[0]})"
    if not isinstance(recorded, dict) or not isinstance(recorded.get("arguments", {}), dict):
        return None, f"a {RUN_FILE} that records no job's arguments"
    return recorded, None


def _local_path(path: str) -> str | None:
    """``path`` on this machine's file system (``file://`` dropped); None for a store's (``gs://``)."""
    if "://" in path and not path.startswith("file://"):
        return None
    return path.removeprefix("file://")


def _lock_path(output: str) -> str | None:
    """``<output>/run.lock`` for a local directory; None for a store (``gs://``), which has no lock to take."""
    local = _local_path(output)
    return None if local is None else os.path.join(local, RUN_LOCK)


def lock_output(output: str) -> None:
    """Take ``<output>/run.lock`` for this process (kept until it exits; again in the same process is a no-op),
    or refuse with the other job's pid when one holds it."""
    import fcntl

    path = _lock_path(output)
    if path is None or path in _HELD_LOCKS:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return  # a directory that cannot be written is refused with its own error by the first write
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise RunConflictError(
            f"{output} is being written by another job{f' (pid {holder})' if holder else ''}: wait for it to "
            "finish (`inverse-instruct report DIR` says when), or use another --output") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD_LOCKS[path] = fd


def lock_holder(output: str) -> int | None:
    """The pid of the job that holds ``<output>/run.lock`` now (0 when it cannot be read), or None when no job
    holds it (or the directory is a store's)."""
    import fcntl

    path = _lock_path(output)
    if path is None or path in _HELD_LOCKS:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or 0
    finally:
        os.close(fd)  # closing also drops the shared lock, if it was taken
    return None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def guard_output(options: PipelineOptions, job: JobSpec) -> None:
    """Record the job's arguments in ``<output>/run.json``; refuse, before any work, to write into a directory
    that holds a run made with other arguments (a re-run with the same ones continues it, cache and all), or
    outputs without a readable run.json to say whose they are (a copied run, a damaged run.json). A run that wrote
    nothing but its run.json and logs (``holds_output``) holds nothing to mix: its run.json is replaced. An empty
    ``--output`` or a file system's root is refused (``check_output_location``)."""
    from beam_pipelines.options import OutputOptions
    from transforms.io.filesystems import atomic_write

    check_output_location(options.view_as(OutputOptions).output)
    output = options.view_as(OutputOptions).output.rstrip("/")
    lock_output(output)  # before run.json is read: two jobs started together cannot both take the directory
    current = {"job": job.name, "arguments": json.loads(json.dumps(result_arguments(options, job), default=str))}
    previous, unreadable = _read_run_file(output)
    if unreadable is not None and holds_output(output):
        raise RunConflictError(
            f"{output} holds earlier outputs but {unreadable}, so whose run they are is unknown and this run's "
            "outputs would be mixed with them. Use a new --output, or remove the directory to start over.")
    if previous is not None:  # a run.json written before an option joined NON_RESULT_OPTIONS or left the options
        # the job reads (JobSpec.reads_only) still matches
        unread = {k for cls, only in job.reads_only.items()
                  for k in options.view_as(cls).get_all_options(current_only=True) if k not in only}
        previous = {**previous, "arguments": {k: v for k, v in previous.get("arguments", {}).items()
                                              if k not in NON_RESULT_OPTIONS and k not in unread}}
    if previous is not None and previous != current and (
            _with_absolute_paths(previous) == _with_absolute_paths(current)):
        # recorded before the launcher made local paths absolute (or on a runner that keeps the corpus's as given):
        # the same paths, as this working directory resolves them
        logging.getLogger(__name__).info("%s/%s: the same paths, recorded as this run gives them", output, RUN_FILE)
        previous = None
    if previous is not None and previous != current and not holds_output(output):
        logging.getLogger(__name__).warning(
            "%s/%s records a run with other arguments that left no outputs and no engine answers (only its "
            "logs and failure report, if any): this run replaces it", output, RUN_FILE)
        previous = None
    if previous is not None and previous != current:
        before, now = previous.get("arguments", {}), current["arguments"]
        changed = [f"  {k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                   if before.get(k) != now.get(k)]
        if previous.get("job") != job.name:
            changed.insert(0, f"  job: {previous.get('job')!r} -> {job.name!r}")
        raise RunConflictError(
            f"{output} holds a run made with other arguments; its outputs and inference cache would be mixed "
            "with this run's. Use a new --output, or remove the directory to start over. Differences:\n"
            + "\n".join(changed))
    if previous is None:
        text = json.dumps(current, indent=2, sort_keys=True) + "\n"
        atomic_write(f"{output}/{RUN_FILE}", lambda f: f.write(text.encode("utf-8")))


def remove_finished_marks(output: str, names: Sequence[str]) -> list[str]:
    """Delete the files (``names``, e.g. ``manifest.json``, ``summary.json``) by which a previous run into
    ``output`` says it finished, before this run's pipeline rewrites its outputs: a re-run that fails part way
    must not leave them vouching for outputs it has partly removed or rewritten (``report`` and the drivers' resume
    read them). Called once the arguments are checked; returns the paths removed."""
    import fsspec

    removed = []
    for name in names:
        path = f"{output.rstrip('/')}/{name}"
        fs, local = fsspec.core.url_to_fs(path)
        if fs.exists(local):
            fs.rm(local)
            removed.append(path)
    if removed:
        logging.getLogger(__name__).info("removed the previous run's %s before this run", ", ".join(removed))
    return removed


def with_profile(argv: Sequence[str], job: JobSpec) -> list[str]:
    """``argv`` with the chosen ``--profile``'s flags in front (so explicit options win)."""
    argv = list(argv)
    if not job.profiles:
        return argv
    name = "default"
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--profile="):
            name = arg.split("=", 1)[1]
    if name not in job.profiles:
        raise UnknownOptionError(f"unknown profile {name!r}; profiles: {', '.join(sorted(job.profiles))}")
    return [*job.profiles[name], *argv]


def check_job_command(argv: Sequence[str], job: JobSpec) -> None:
    """The checks ``pipeline_options`` makes before any work (known options, argparse's values, the job's own
    ``check``), without guarding or touching the output: a driver runs them on the command a later step will run,
    so a typo in its pass-through options fails at once instead of after hours of earlier steps."""
    from beam_pipelines.options import OutputOptions

    argv = list(argv)
    check_known_options(argv, job)
    options = PipelineOptions(with_profile(argv, job))
    check_output_location(options.view_as(OutputOptions).output)
    check_path_locations(options, job)
    if job.check is not None:
        job.check(options)


def quiet_local_sdk_workers(options: PipelineOptions) -> None:
    """``--direct_running_mode=multi_processing`` starts SDK worker processes that log at INFO on the terminal
    (about 20 lines each: channels, harness start and exit, every pipeline option); they log warnings only, as this
    process does, unless the user set their level or asked for ``--verbose``. The launcher's re-logging of the
    workers' own warnings (their options it does not know, a missing state directory) is silenced too."""
    from apache_beam.options.pipeline_options import WorkerOptions

    worker = options.view_as(WorkerOptions)
    if worker.default_sdk_harness_log_level is None:
        worker.default_sdk_harness_log_level = "WARNING"
    if worker.sdk_harness_log_level_overrides is None:  # the harness's own notes, logged as warnings
        worker.sdk_harness_log_level_overrides = {"__main__": "ERROR", "apache_beam.options.pipeline_options": "ERROR"}
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def local_runner(options: PipelineOptions):
    """The runner object for ``--runner DirectRunner`` (the default): Beam's DirectRunner without its first try of
    Prism. Beam 2.77's DirectRunner runs a pipeline Prism accepts on Prism, a Go binary it downloads from GitHub at
    run time (offline, the download fails and it falls back to the FnApiRunner this project runs and tests on). The
    DirectRunner's only switch for that try is its interactive flag, which nothing else in it reads. None for any
    other runner."""
    if options.view_as(StandardOptions).runner != "DirectRunner":
        return None
    from apache_beam.runners.direct import direct_runner

    class SwitchingDirectRunner(direct_runner.SwitchingDirectRunner):
        """Without Prism. It keeps its parent's class name: ``Pipeline.run`` reads that name to skip a round trip
        of the whole pipeline through the runner API (about 0.1 s a run), which a batch pipeline on the
        DirectRunner does not need; under another name every job paid it."""
        _is_interactive = True

    return SwitchingDirectRunner()


def pipeline_options(argv: Sequence[str] | None, job: JobSpec) -> PipelineOptions:
    """Checked options (with the ``--profile``'s settings) and the DirectRunner as the default runner; the job's
    own checks (``JobSpec.check``) pass before the output directory is guarded, so arguments that fail them leave
    no run.json behind to refuse their corrected re-run. Every local path option is made absolute here
    (``absolute_paths``), so the pipeline, its workers and run.json see the paths this process resolved."""
    from beam_pipelines.options import OutputOptions

    argv = list(argv or [])
    check_known_options(argv, job)
    argv = with_profile(argv, job)
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:  # run_timed gives it the runner without Prism (local_runner)
        standard.runner = "DirectRunner"
    if standard.runner == "DirectRunner" and "--verbose" not in argv:
        quiet_local_sdk_workers(options)
    check_output_location(options.view_as(OutputOptions).output)  # before it is made absolute: "" is no cwd
    check_path_locations(options, job)
    absolute_paths(options, job)
    if job.check is not None:
        job.check(options)
    if job.requests is not None:
        choose_engine_compilation(options, job)
    guard_output(options, job)
    return options


def choose_engine_compilation(options: PipelineOptions, job: JobSpec) -> None:
    """Eager or compiled vLLM from the job's size (``runners.options.choose_compilation``), before run.json is
    written: a compiled choice is recorded there as ``enforce_eager: false``. A re-run into a directory whose run
    chose compiled keeps that choice (its cache answers and its outputs came from the compiled engine)."""
    from beam_pipelines.options import OutputOptions
    from runners.options import choose_compilation

    previous, _ = _read_run_file(options.view_as(OutputOptions).output.rstrip("/"))
    recorded = (previous or {}).get("arguments", {}).get("enforce_eager") if (
        (previous or {}).get("job") == job.name) else None
    note = choose_compilation(options, functools.partial(job.requests, options),
                              recorded=recorded if isinstance(recorded, bool) else None, workload=job.workload)
    if note:
        logging.getLogger(__name__).info(note)
        if not options.view_as(OutputOptions).quiet:
            print(f"{job.prog}: {note}", file=sys.stderr, flush=True)


def counter_totals(result, prefix: str) -> dict[str, int]:
    """Committed Beam counters whose name starts with ``prefix`` (e.g. ``inference_cache.``), summed over steps;
    empty on a runner without metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter())["counters"]
    except Exception:  # a runner without metrics support
        return {}
    totals: dict[str, int] = {}
    for c in counters:
        if c.key.metric.name.startswith(prefix) and c.committed is not None:
            name = c.key.metric.name[len(prefix):]
            totals[name] = totals.get(name, 0) + int(c.committed)
    return totals


def engine_seconds(result) -> float | None:
    """Time spent inside the engine: the sum of RunInference's per-batch inference latencies."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        distributions = result.metrics().query(MetricsFilter().with_name("inference_batch_latency_micro_secs"))
    except Exception:  # a runner without metrics support
        return None
    total = sum(d.committed.sum for d in distributions["distributions"] if d.committed is not None)
    return total / 1e6 if distributions["distributions"] else None


def configure_engine_log(output: str) -> str:
    """Send the engine's own messages (vLLM's start-up warnings and logs, in its subprocesses too) to a file
    instead of the console; returns the file. Local outputs keep it in ``<output>/logs/engine.log``."""
    from runners.engines.common import ENGINE_LOG_ENV

    if "://" in output:
        directory = tempfile.mkdtemp(prefix="inverse-instruct-logs-")
    else:
        directory = os.path.join(output, "logs")
        os.makedirs(directory, exist_ok=True)
    path = os.path.abspath(os.path.join(directory, "engine.log"))
    config = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": path, "formatter": "plain", "level": "INFO"}},
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    config_path = os.path.join(directory, "engine-logging.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = config_path  # read when vllm is imported (engine processes too)
    os.environ[ENGINE_LOG_ENV] = path
    vllm_logger = logging.getLogger("vllm")  # what vllm logs in this process before it configures itself
    # One job's file at a time: jobs run one after another in one process (library use, tests, benches) would
    # otherwise each add a handler, and every later job's engine messages would land in every earlier job's log.
    for handler in [h for h in vllm_logger.handlers if getattr(h, _ENGINE_LOG_HANDLER, False)]:
        vllm_logger.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path)
    setattr(handler, _ENGINE_LOG_HANDLER, True)
    vllm_logger.addHandler(handler)
    vllm_logger.propagate = False
    return path


_ENGINE_LOG_HANDLER = "_inverse_instruct_engine_log"  # marks the handler configure_engine_log installed


def run_timed(options: PipelineOptions, build: Callable[[beam.Pipeline, PipelineOptions], Any],
              stage_order: Sequence[str] | None = None, uses_engine: bool = True):
    """Build the job with ``build`` and run it to the end, with live progress on stderr unless ``--quiet``:
    (pipeline result, what ``build`` returned, wall seconds). ``uses_engine``: whether to say where the engine's
    messages go (a run that starts no engine does not)."""
    from beam_pipelines.options import OutputOptions
    from transforms.io.options import SPILL_NONE, SpillOptions, resolve_spill_dir
    from transforms.io.spill import remove_spill_dir
    from transforms.stats.progress import (
        LIVE,
        PROGRESS_DIR_ENV,
        PROGRESS_DIR_PREFIX,
        ProgressReporter,
        mark_progress_dir,
    )
    from transforms.stats.report import FAILED_NAME

    out = options.view_as(OutputOptions)
    started = time.monotonic()
    remove_finished_marks(out.output, [FAILED_NAME])  # an earlier failure's record: this run decides anew
    engine_log = configure_engine_log(out.output.rstrip("/"))
    if uses_engine and not out.quiet:
        print(f"inverse-instruct: engine messages go to {engine_log}", file=sys.stderr, flush=True)
    reporter = None
    directory = None
    LIVE.reset()
    spill = options.view_as(SpillOptions)
    spill_choice, spill_root = spill.spill_dir, resolve_spill_dir(options)  # one fresh directory for the job
    spill.spill_dir = spill_root or SPILL_NONE
    # The counters' directory, even when --quiet: a failed run's report shows what they had counted.
    directory = tempfile.mkdtemp(prefix=PROGRESS_DIR_PREFIX)
    os.environ[PROGRESS_DIR_ENV] = directory  # inherited by the runner's worker processes
    if not out.quiet:
        console = os.fdopen(os.dup(2), "w", buffering=1)  # stays the console while an engine starts (see engines)
        reporter = ProgressReporter(directory, interval=out.progress_interval, order=list(stage_order or ()),
                                    stream=console).start()
    else:
        mark_progress_dir(directory)  # this job's: another job's clean-up leaves it alone
    try:
        pipeline = beam.Pipeline(runner=local_runner(options), options=options)
        built = build(pipeline, options)
        try:
            result = pipeline.run()
            result.wait_until_finish()
        finally:  # Beam removes it only for a pipeline run in a `with` block
            shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
        LIVE.flush()
    except BaseException as err:
        report_failure(out.output, err, directory, stage_order, time.monotonic() - started, options)
        raise
    finally:
        spill.spill_dir = spill_choice
        if spill_root:
            remove_spill_dir(spill_root)
        if reporter is not None:
            reporter.stop()
            reporter.stream.close()
        os.environ.pop(PROGRESS_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
    return result, built, time.monotonic() - started


# The stop signals job_main has received (SIGINT, SIGTERM), for the failure report's words.
STOP_SIGNALS: list[int] = []
# The outputs whose summary.json this process has written (write_summary): a stop that arrives after its job's is
# written finds a finished run, with nothing to resume.
FINISHED_OUTPUTS: list[str] = []


def resume_advice(options: PipelineOptions, output: str, stopped: bool) -> str:
    """What re-running the command would reuse, as the interrupt note says it (the inference cache only)."""
    from runners.options import EngineOptions

    engine = options.view_as(EngineOptions)
    text = cache_resume_note(engine.no_cache, engine.inference_cache or f"{output.rstrip('/')}/cache")
    return text if stopped else f"Fix the cause of the error first. {text}"


def cache_resume_note(no_cache: bool, cache: str) -> str:
    """What a re-run reuses, from the inference cache alone (every other stage runs again)."""
    if no_cache:
        return "Nothing was cached (--no-cache): re-running the command starts over."
    parts = local_cache_parts(cache)  # each holds at least one answer: runners.cache.write_part writes none empty
    if parts == []:  # an extract-only run, or stopped before the engine's first answer was saved
        return "No engine answer was saved yet: re-running the command starts over."
    reused = "already saved" if parts else "saved (if any)"
    answers = _answers_in(parts) if parts else None
    counted = f" ({answers:,} saved)" if answers else ""
    return (f"Re-run the same command to resume: the engine answers {reused} in {cache} are reused, "
            f"and only the rest is asked of the engine{counted}.")


# Past this size a cache's answers are not counted for a note (a stopped job must not spend its exit reading it).
CACHE_COUNT_MAX_BYTES = 256 << 20


def local_cache_answers(cache: str) -> int | None:
    """How many engine answers the local inference cache at ``cache`` holds (one per line of its parts: answers
    streamed in while their batch was still running included, which the progress counters do not count yet);
    None for a store's cache, one that cannot be read, or one over ``CACHE_COUNT_MAX_BYTES``."""
    parts = local_cache_parts(cache)
    return None if parts is None else _answers_in(parts)


def _answers_in(parts: Sequence[str]) -> int | None:
    """The answers in these cache part files (one per line); None when they cannot be read or are too large."""
    try:
        if sum(os.path.getsize(part) for part in parts) > CACHE_COUNT_MAX_BYTES:
            return None
        answers = 0
        for part in parts:
            with open(part, "rb") as f:
                answers += sum(1 for line in f if line.strip())
    except OSError:
        return None
    return answers


def report_failure(output: str, err: BaseException, progress_dir: str, stage_order: Sequence[str] | None,
                   elapsed: float, options: PipelineOptions | None = None) -> None:
    """``failed.json`` and ``report.html`` for a pipeline that raised (or was stopped: Ctrl-C, SIGTERM): the error
    and each stage's counts from the live counters, and what a re-run reuses. A stopped run leaves no manifest or
    summary, even one its pipeline wrote just before the stop. Best effort: nothing here may hide the job's own
    error."""
    from transforms.stats.progress import LIVE, engine_line, read_progress, stage_rows
    from transforms.stats.report import write_failure_report

    try:
        LIVE.flush()
        counters = read_progress(progress_dir) or LIVE.snapshot()
        run, _ = _read_run_file(output.rstrip("/"))
        stopped = any(isinstance(e, KeyboardInterrupt) for e in _chain(err))  # Beam wraps one raised in a step
        error = f"{type(err).__name__}: {err}"[:4000]
        if stopped:
            how = "SIGTERM" if signal.SIGTERM in STOP_SIGNALS else "Ctrl-C (SIGINT)"
            error = f"stopped by {how} ({error})"
            remove_finished_marks(output, ["manifest.json", "summary.json"])
        failure = {"job": (run or {}).get("job"), "status": "stopped" if stopped else "failed",
                   "error": error, "wall_seconds": round(elapsed, 2),
                   "stages": [{"stage": name, **{k: int(v) for k, v in counts.items()}}
                              for name, counts in stage_rows(counters, list(stage_order or ()))],
                   "engine": engine_line(counters)}
        remote = next((e.remote_traceback for e in _chain(err) if getattr(e, "remote_traceback", None)), None)
        if remote:
            failure["engine_traceback"] = remote[-20000:]
        if options is not None:
            failure["resume"] = resume_advice(options, output, stopped)
        path = write_failure_report(output, failure)
        print(f"inverse-instruct: what the run did before it stopped: {path}", file=sys.stderr, flush=True)
    except Exception as problem:  # a full disk, an unreachable store: the job's own error matters more
        logging.getLogger(__name__).warning("no failure report: %s", problem)


def write_summary(output: str, summary: dict[str, Any], result=None, hidden: Sequence[str] = ()) -> dict[str, Any]:
    """Add the time spent inside the engine and the inference cache's hits (when ``result`` ran an engine), write
    ``summary.json``, print it."""
    inside = engine_seconds(result) if result is not None else None
    if inside is not None:
        summary["engine_seconds"] = round(inside, 2)
    cache = counter_totals(result, "inference_cache.") if result is not None else {}
    if cache:
        summary["inference_cache"] = {"hits": cache.get("hits", 0), "misses": cache.get("misses", 0),
                                        "seconds": round(cache.get("overhead_us", 0) / 1e6, 3)}
    from transforms.io.parquet import write_index_atomic

    write_index_atomic(f"{output}/summary.json", summary)
    FINISHED_OUTPUTS.append(output.rstrip("/"))
    print(summary_text(output, {k: v for k, v in summary.items() if k not in hidden}))
    return summary


def summary_text(output: str, summary: Mapping[str, Any]) -> str:
    """The summary as the terminal shows it: one ``name: value`` line per entry (a mapping's items on its line)."""
    def value(v: Any) -> str:
        if isinstance(v, Mapping):
            return ", ".join(f"{k}={value(x)}" for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return ", ".join(map(value, v)) if v else "none"
        return str(v)

    width = max((len(str(k)) for k in summary), default=0)
    lines = [f"output in {output} (summary.json holds these numbers)"]
    lines += [f"  {k:<{width}}  {value(v)}" for k, v in summary.items()]
    return "\n".join(lines)


def print_help(job: JobSpec) -> None:
    """The job's options, then Beam's own."""
    _parser(job).print_help()


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then what it stands for when Beam re-raised it for a step (``[while running '...']``; Beam raises its
    copy while handling the original, which is its ``__context__``). Other chains are not followed: an error raised
    while handling a user error is a bug of its own."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        if not getattr(err, "_tagged_with_step", False):
            return
        err = err.__cause__ or err.__context__


class _DropReported(logging.Filter):
    """Beam logs each exception of a step with its traceback before re-raising it; those job_main reports in one
    line (an interrupt, a configuration error) are dropped."""

    def __init__(self, reported: tuple[type[BaseException], ...]):
        super().__init__()
        self._reported = reported

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, self._reported)


def interrupt_message(argv: Sequence[str], job: JobSpec, signum: int = signal.SIGINT) -> str:
    """What an interrupted (Ctrl-C) or terminated (SIGTERM) job says: how to resume, as far as the inference cache
    makes that true (only engine answers are kept; every other stage runs again)."""
    from beam_pipelines.options import OutputOptions
    from runners.options import EngineOptions

    text = f"{job.prog}: {'terminated (SIGTERM)' if signum == signal.SIGTERM else 'interrupted'}."
    if OutputOptions not in job.option_classes:
        return text
    parser = _JobParser(prog=job.prog, add_help=False, allow_abbrev=False, conflict_handler="resolve")
    for cls in (OutputOptions, EngineOptions) if EngineOptions in job.option_classes else (OutputOptions,):
        cls._add_argparse_args(parser)
    try:
        args, _ = parser.parse_known_args(list(argv))
    except JobConfigError:  # interrupted while its arguments were still being checked
        return text
    if args.output and args.output.rstrip("/") in FINISHED_OUTPUTS:  # the stop came as the job printed its summary
        return (f"{text[:-1]} after its run had finished: {args.output.rstrip('/')}/summary.json holds its numbers "
                "and nothing is left to resume.")
    if EngineOptions not in job.option_classes:
        return text
    cache = args.inference_cache or f"{args.output.rstrip('/')}/cache"
    return f"{text} {cache_resume_note(args.no_cache, cache)}"


def local_cache_parts(cache: str) -> list[str] | None:
    """The part files of the local inference cache at ``cache``; None for a cache in a store (asking it could hang
    on an interrupted job's way out) and when this process cannot tell."""
    import glob

    from runners.cache import PART_GLOB

    local = _local_path(cache)
    if local is None:
        return None
    try:
        return glob.glob(os.path.join(glob.escape(local), PART_GLOB))
    except OSError:
        return None


def stdout_reader_gone() -> int:
    """Stop quietly, as Unix tools do, when the reader of stdout went away (``... | head``): stdout now points at
    /dev/null, so the interpreter's own flush at exit does not raise again; 141 is 128 + SIGPIPE, what a shell
    reports for a tool the signal killed."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


def job_main(argv: Sequence[str] | None, job: JobSpec, run: Callable[[Sequence[str]], dict[str, Any]]) -> int:
    """``--help``, option check, logging, then ``run``; the exit code says whether the job's counts balance.

    A configuration error (``user_error_classes``) prints ``<job>: error: <message>`` and returns 2 (``--verbose``
    adds its traceback); Ctrl-C (SIGINT) prints how to resume and returns 130. Both close the live engines (their
    subprocesses) first. Any other exception propagates with its traceback."""
    argv = list(argv if argv is not None else sys.argv[1:])
    if "--help" in argv or "-h" in argv:
        print_help(job)
        return 0
    STOP_SIGNALS.clear()
    FINISHED_OUTPUTS.clear()

    def on_interrupt(signum, frame):
        STOP_SIGNALS.append(signum)
        signal.default_int_handler(signum, frame)  # KeyboardInterrupt, wherever the main thread is

    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers are set
    # SIGTERM (a supervisor's or `kill PID`'s stop) ends the job as Ctrl-C does: engines closed at once, the
    # resume note, exit 128 + the signal's number.
    previous = {signum: signal.signal(signum, on_interrupt) for signum in (signal.SIGINT, signal.SIGTERM)
                } if in_main_thread else {}
    user_errors = user_error_classes()
    from runners.api import EngineFailure

    beam_log = logging.getLogger("apache_beam.runners.common")
    drop_reported = _DropReported((KeyboardInterrupt, EngineFailure, *user_errors))
    beam_log.addFilter(drop_reported)
    try:
        check_known_options(argv, job)
        logging.getLogger().setLevel(logging.INFO if "--verbose" in argv else logging.WARNING)
        result = run(argv)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader of stdout went away (`... | head`), after the job's work was done
        return stdout_reader_gone()
    except BaseException as err:  # told apart below; anything else is re-raised as it is
        chain = list(_chain(err))
        was_interrupted = bool(STOP_SIGNALS) or any(isinstance(e, KeyboardInterrupt) for e in chain)
        user = next((e for e in chain if isinstance(e, user_errors)), None)
        if user is None:  # fsspec's or Beam's ImportError for a scheme's or runner's missing package (gs://)
            from transforms.io.filesystems import missing_package_message

            user = next((message for e in chain if (message := missing_package_message(e))), None)
        # The engine's own failure (it did not start, or its process died): one line; its traceback, from the
        # engine's process, is in failed.json (Beam's copies of it would print it four times over).
        engine = next((e for e in reversed(chain) if isinstance(e, EngineFailure)), None)
        if not was_interrupted and user is None and engine is None:
            raise
        # Close the engines (their subprocesses) now, while the failed pipeline still holds them: once this
        # exception is dropped they may be collected, and leave the registry that closes them at exit.
        from runners.engines.cleanup import LIVE_ENGINES, close_all_engines

        if len(LIVE_ENGINES):
            close_all_engines()
        if was_interrupted:
            signum = STOP_SIGNALS[0] if STOP_SIGNALS else signal.SIGINT
            print(interrupt_message(argv, job, signum), file=sys.stderr, flush=True)
            return 128 + signum
        if "--verbose" in argv:
            traceback.print_exception(err, file=sys.stderr)
        if user is None:
            print(f"{job.prog}: error: {engine}\n  (the engine's traceback: failed.json in the output directory, "
                  "or --verbose)", file=sys.stderr, flush=True)
            return 1
        print(f"{job.prog}: error: {user}", file=sys.stderr, flush=True)
        return 2
    finally:
        beam_log.removeFilter(drop_reported)
        for signum, handler in previous.items():
            fallback = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, handler if handler is not None else fallback)
    # 1 also for a run that balances but whose engine failed every request (``engine_failed``): nothing to use
    return 0 if result["balanced"] and not result.get("engine_failed") else 1
