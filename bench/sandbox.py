"""Cost of isolation: programs/s on HumanEval's 164 canonical solutions, three ways.

* ``bare``: plain ``python -I`` running solution + tests + ``check(...)`` in a subprocess, one at a time (the old
  sandbox without its guard; no isolation, no verdict logic beyond the exit code);
* ``sandbox``: ``transforms.execute.verdicts.run_function_tests`` one at a time (bwrap, rlimits, the agent, the
  trusted ``check`` calling into the sandbox);
* ``pool``: the same through ``SandboxPool(--workers)``.

Every solution must pass in every path (the bench fails otherwise). Reports programs/s and ms/program for each
path, and the isolation cost per program (sandbox / bare).

    python bench/sandbox.py                # 164 problems, 2 pool workers, best of 3 rounds
    python bench/sandbox.py --rounds 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.hardware import describe_machine  # noqa: E402
from transforms.execute.isolation import IsolationLimits, bwrap_available, interpreter  # noqa: E402
from transforms.execute.pool import SandboxPool  # noqa: E402
from transforms.execute.problems import load_problems, test_program  # noqa: E402
from transforms.execute.verdicts import run_function_tests  # noqa: E402


def run_bare(problem, limits: IsolationLimits) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as work:
        result = subprocess.run([sys.executable, "-I", "-c",
                                 test_program(problem, problem.prompt + problem.canonical_solution)],
                                cwd=work, env={"PATH": "/usr/bin:/bin", "HOME": work}, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=limits.timeout_s)
    return result.returncode == 0


def run_sandboxed(problem, limits: IsolationLimits) -> bool:
    return run_function_tests(problem, problem.prompt + problem.canonical_solution, limits).passed


def timed(label: str, fn, problems) -> float:
    started = time.perf_counter()
    ok = fn(problems)
    elapsed = time.perf_counter() - started
    if not all(ok):
        raise SystemExit(f"{label}: {ok.count(False)} canonical solutions failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds per path")
    args = parser.parse_args()
    if not bwrap_available():
        raise SystemExit("bwrap does not work here: apt-get install bubblewrap")
    problems = load_problems()
    limits = IsolationLimits(timeout_s=30)
    paths = {
        "bare": lambda ps: [run_bare(p, limits) for p in ps],
        "sandbox": lambda ps: [run_sandboxed(p, limits) for p in ps],
    }
    best: dict[str, float] = {}
    with SandboxPool(args.workers) as pool:
        paths["pool"] = lambda ps: pool.map(lambda p: run_sandboxed(p, limits), ps)
        for _ in range(args.rounds):
            for label, fn in paths.items():
                elapsed = timed(label, fn, problems)
                best[label] = min(best.get(label, elapsed), elapsed)
    n = len(problems)
    report = {
        "machine": describe_machine(),
        "problems": n, "workers": args.workers, "rounds": args.rounds, "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2), "sandbox_python": interpreter()[0], "bare_python": sys.executable,
        **{f"{label}_programs_per_s": round(n / s, 1) for label, s in best.items()},
        **{f"{label}_ms_per_program": round(1000 * s / n, 1) for label, s in best.items()},
        "isolation_cost_x": round(best["sandbox"] / best["bare"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
