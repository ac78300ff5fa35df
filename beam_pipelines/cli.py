"""The ``inverse-instruct`` command: one subcommand per job.

    inverse-instruct generate --output runs/demo --limit 50     # the main job (Inverse-Instruct data)
    inverse-instruct evaluate --output runs/eval                # pass@k with sandboxed execution
    inverse-instruct self-play --output runs/puzzles            # self-play programming puzzles
    inverse-instruct self-play-loop --rounds 2 --output runs/sp # the self-play loop with fine-tuning
    inverse-instruct paper --output runs/paper                  # InverseCoder end to end, Table 3
    inverse-instruct train --config training/configs/inversecoder.yaml
    inverse-instruct report runs/demo                           # the run's summary from its manifest

``inverse-instruct <subcommand> --help`` lists that job's options. The ``python -m beam_pipelines.<job>`` and
``python -m training.finetune`` forms work too. A job module is imported only when its subcommand runs, so
each job sees only its own options.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, NoReturn, Sequence

# subcommand -> (module, one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("beam_pipelines.inverse_instruct",
                 "the main job: extract, summarize, judge, select, decontaminate, shard"),
    "evaluate": ("beam_pipelines.evaluate", "pass@k of a model on an execution benchmark, in the sandbox"),
    "self-play": ("beam_pipelines.self_play", "self-play programming puzzles: generate, filter, solve, verify, shard"),
    "self-play-loop": ("beam_pipelines.self_play_loop", "R rounds of self-play, fine-tuning and P3 evaluation"),
    "paper": ("beam_pipelines.paper", "InverseCoder in one command: data, two-stage fine-tune, Table 3"),
    "train": ("training.finetune", "fine-tune on training shards (also under torchrun)"),
    "report": ("beam_pipelines.report", "the summary of a finished run, from its output directory"),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    title = __doc__.strip().split("\n")[0].replace("``", "")
    lines = [title, "", "usage: inverse-instruct <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "`inverse-instruct <subcommand> --help` lists a subcommand's options."]
    return "\n".join(lines)


def job_entry(name: str) -> Callable[[Sequence[str]], int | None]:
    return importlib.import_module(SUBCOMMANDS[name][0]).main


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = dispatch(argv)
        sys.stdout.flush()
        return code
    except (ValueError, ImportError) as err:  # a subcommand without the jobs' one-line errors (report)
        message = missing_filesystem(err)
        if message is None:
            raise
        print(f"inverse-instruct: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`inverse-instruct ... | head`)
        from beam_pipelines.launch import stdout_reader_gone

        return stdout_reader_gone()
    except KeyboardInterrupt:
        # Ctrl-C before the job took over its own (while its modules import): nothing started, nothing to resume.
        print("inverse-instruct: interrupted before the job started", file=sys.stderr)
        return 130


def missing_filesystem(err: BaseException) -> str | None:
    """One line for a path whose scheme needs a package that is not installed (``gs://`` without gcsfs), naming the
    package and the extra to install; None for any other error."""
    filesystems = sys.modules.get("transforms.io.filesystems")
    if isinstance(err, ImportError) and ("gcp]" in str(err) or "install" in str(err).lower()):
        import transforms.io.filesystems as filesystems

        return filesystems.missing_package_message(err)
    if filesystems is not None and isinstance(err, filesystems.FilesystemUnavailable):
        return str(err)
    return None


def dispatch(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a usage error, as argparse makes it: the usage on stderr, exit 2
        print(f"inverse-instruct: error: a subcommand is required\n\n{usage()}", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        import difflib

        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"inverse-instruct: unknown subcommand {name!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    code = job_entry(name)(rest)
    return int(code or 0)


THREAD_JOIN_SECONDS = 30.0


def exit_process(code: int | None) -> NoReturn:
    """End the process with ``code`` after Python's own exit work (non-daemon threads joined, atexit handlers run:
    engine cleanup, logging, multiprocessing, finalizers; stdout and stderr flushed) but without the interpreter's
    native teardown, where Arrow's C++ thread pools can be destroyed while still joinable and abort a finished job
    with SIGABRT ("terminate called without an active exception", exit 134; apache/arrow#34314; seen once in 26
    extract-only runs here). The ``python -m`` and console-script entries end here; ``main`` functions return
    their code, for callers in the same process (tests)."""
    import atexit
    import threading
    import time

    # A stopped job may leave a thread of the runner's that never ends (Beam's state sampler, seen once after a
    # SIGTERM: the job printed its note and then waited forever): the threads get a bounded time, not forever.
    deadline = time.monotonic() + THREAD_JOIN_SECONDS
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream: nothing left to say
            pass
    os._exit(int(code or 0))


def run() -> NoReturn:
    """The ``inverse-instruct`` console script."""
    if sys.argv[1:2] == ["train"]:  # the training job's process starts with TCMalloc (training.allocator)
        from training.allocator import restart_with_tcmalloc

        restart_with_tcmalloc()
    exit_process(main())


if __name__ == "__main__":
    run()
