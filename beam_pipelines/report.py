"""The summary of a finished run, read back from its output directory.

    inverse-instruct report runs/demo

Reads ``manifest.json`` (the main job) or ``summary.json`` (evaluate, self-play, and the paper and self-play-loop
drivers, whose ``summary.md`` table it prints), prints the stage table or the summary, and renders
``report.html`` again from the outputs; it runs no pipeline.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from transforms.io.filesystems import read_text


def summary_table(output: str, data: dict) -> str:
    """A driver's ``summary.md`` (paper, self-play loop: the results table), else the job's summary as lines."""
    try:
        return read_text(f"{output}/summary.md").rstrip()
    except (FileNotFoundError, OSError):
        from beam_pipelines.launch import summary_text

        shown = {k: v for k, v in data.items() if k not in ("solved", "rows")}
        return summary_text(output, {k: shown[k] for k in sorted(shown, key=_summary_order)})


def _summary_order(key: str) -> tuple:
    """The order the jobs print their summary in, which summary.json (keys sorted) loses: an evaluation's counts and
    pass@k (by k) first, then the rest by name."""
    lead = ("problems", "samples", "statuses")
    if key in lead:
        return (0, lead.index(key))
    if key.startswith("pass@") and key[5:].isdigit():
        return (1, int(key[5:]))
    return (2, key)


PROG = "inverse-instruct report"


def directory_problem(output: str) -> str | None:
    """Why ``output`` (any fsspec path) cannot be a run's output directory, or None."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(output)
        if not fs.exists(path):
            return f"{output} does not exist"
        if not fs.isdir(path):
            return f"{output} is not a directory"
    except (OSError, ValueError):  # an unreachable store: reading the files below says what is wrong
        return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().split("\n")[0])
    parser.add_argument("output", help="The output directory of a finished run.")
    args = parser.parse_args(argv)
    output = args.output.rstrip("/")
    problem = directory_problem(output)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    for name in ("manifest.json", "summary.json"):
        try:
            text = read_text(f"{output}/{name}")
        except (FileNotFoundError, OSError):
            continue
        try:
            data = json.loads(text)
        except ValueError as err:  # truncated or half-written
            print(f"{PROG}: {output}/{name} is not valid JSON ({err}); it may be cut short (a run "
                  "stopped while writing it): run the job again to rewrite it", file=sys.stderr)
            return 2
        from transforms.stats.report import ReportInputError, check_manifest, check_summary

        try:
            (check_manifest if name == "manifest.json" else check_summary)(data, f"{output}/{name}")
        except ReportInputError as err:
            print(f"{PROG}: {err}", file=sys.stderr)
            return 2
        from transforms.io.output_errors import OutputWriteError
        from transforms.stats.report import write_report

        # Rendered before anything is printed: `report DIR | head` ends this process at its first full pipe.
        problems: list[str] = []
        try:
            rendered, write_error = write_report(output, problems), None
        except OutputWriteError as err:  # report.html cannot be written (a directory in its way, a full disk)
            rendered, write_error = None, err
        if name == "manifest.json" and data.get("job") != "self-play":
            from beam_pipelines.inverse_instruct import print_summary, read_selected

            try:
                selected = read_selected(output, data)
            except (OSError, ValueError):  # the report still shows the counts when the rows cannot be read
                selected = []
            print_summary(data, output, selected)  # as the job's own closing summary, examples included
        else:
            print(summary_table(output, data))
        if write_error is not None:
            print(f"{PROG}: {write_error}", file=sys.stderr)
            return 2
        print(f"report: {rendered}")
        if problems:  # the run's outputs are damaged: not a clean report, though it shows the rest
            print(f"{PROG}: left out of the report: {'; '.join(problems)}", file=sys.stderr)
            return 2
        return 0 if data.get("balanced", True) and not data.get("engine_failed") else 1
    from transforms.stats.training_report import training_stages, training_summary_text, write_training_report

    stages = training_stages(output)  # a training run (inverse-instruct train): readable while it runs, too
    if stages is not None:
        rendered = write_training_report(output)  # before printing, as above
        print(training_summary_text(output, stages))
        print(f"report: {rendered}")
        return 0
    from beam_pipelines.launch import lock_holder

    holder = lock_holder(output)
    if holder is not None:  # a job is writing it now: its failure report or unfinished state is not the news
        print(f"{PROG}: {output} is being written by a running job{f' (pid {holder})' if holder else ''}; its "
              "report is written when it finishes (its live progress is on that job's stderr)", file=sys.stderr)
        return 2
    failed = failed_run(output)
    if failed is not None:  # the pipeline raised or was stopped: what it had done, and its error
        from transforms.stats.report import write_report

        rendered = write_report(output)
        print(f"{failed.get('status', 'failed')}: {failed.get('error', '')}")
        for stage in failed.get("stages") or []:
            print(f"  {stage.get('stage')}: in={stage.get('in', 0):,} out={stage.get('out', 0):,} "
                  f"rejected={stage.get('rejected', 0):,}")
        for line in (failed.get("engine"), failed.get("resume")):
            if line:
                print(line)
        print(f"report: {rendered}")
        return 1
    unfinished = unfinished_run_note(output)
    print(f"{PROG}: {output} holds no manifest.json or summary.json (is it a finished run?)"
          + (f"; {unfinished}" if unfinished else ""), file=sys.stderr)
    return 2


def unfinished_run_note(output: str) -> str | None:
    """For a directory a run started but never finished (killed outright: no failure report either), what it
    holds towards a resume: its job and the engine answers cached in ``<output>/cache``."""
    try:
        run = json.loads(read_text(f"{output}/run.json"))
    except (FileNotFoundError, OSError, ValueError):
        return None
    if not isinstance(run, dict) or not run.get("job"):
        return None
    from beam_pipelines.launch import local_cache_answers

    answers = local_cache_answers(f"{output}/cache")
    saved = (f"engine answers may be saved in {output}/cache (too many to count here)" if answers is None
             else f"{answers:,} engine answer(s) are saved in {output}/cache" if answers
             else "no engine answer was saved in its cache")
    return (f"it holds an unfinished `{run['job']}` run (stopped before it could report, e.g. killed): {saved}; "
            "re-run the same command to resume")


def failed_run(output: str) -> dict | None:
    """The ``failed.json`` a job wrote when its pipeline raised or was stopped, or None."""
    from transforms.stats.report import FAILED_NAME

    try:
        data = json.loads(read_text(f"{output}/{FAILED_NAME}"))
    except (FileNotFoundError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


if __name__ == "__main__":
    from beam_pipelines.cli import exit_process

    exit_process(main())
