"""A malformed or empty benchmark file (decontamination's ``--benchmark``, evaluation's ``--problems`` or
``--benchmark NAME=FILE``) is refused like a missing one: one line, exit code 2, before run.json and any work."""
from __future__ import annotations

import json

import pytest

from beam_pipelines import evaluate, inverse_instruct
from beam_pipelines.launch import RUN_FILE

SNIPPET = json.dumps({"instruction": "Add.", "output": "```python\ndef add(a, b):\n    return a + b\n```"})
ROW = json.dumps({"id": "1", "p": "Add two numbers.", "s": "def add(a, b):\n    return a + b"})
PROBLEM = {"task_id": "t/0", "prompt": "def one():\n", "entry_point": "one",
           "test": "def check(candidate):\n    assert candidate() == 1\n", "canonical_solution": "    return 1\n"}


def _one_error_line(capsys, code: int, prog: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


@pytest.mark.parametrize("text, wanted", [
    (ROW + "\n{not json\n", "bench.jsonl:2: not JSON"),
    (ROW + "\n" + json.dumps({"id": "2", "p": "Subtract."}) + "\n", "has no column 's' (for solution)"),
    ("", "holds no benchmark items"),
    ("\n\n", "holds no benchmark items"),
])
def test_a_bad_decontamination_benchmark_file_is_one_line_and_exit_2_before_run_json(tmp_path, capsys, text,
                                                                                     wanted):
    corpus = tmp_path / "pairs.jsonl"
    corpus.write_text(SNIPPET + "\n")
    bench = tmp_path / "bench.jsonl"
    bench.write_text(text)
    out = tmp_path / "out"
    code = inverse_instruct.main([
        f"--input={corpus}", "--instruction-column=instruction", "--response-column=output", "--stages=extract",
        "--decontam-source", f"--benchmark=mb={bench}", "--benchmark-fields=mb:task_id=id,prompt=p,solution=s",
        f"--output={out}", "--quiet"])
    line = _one_error_line(capsys, code, inverse_instruct.JOB.prog)
    assert f"--benchmark mb={bench}" in line and wanted in line, line
    assert not (out / RUN_FILE).exists()


def test_a_bad_registry_format_benchmark_file_names_the_missing_field(tmp_path, capsys):
    corpus = tmp_path / "pairs.jsonl"
    corpus.write_text(SNIPPET + "\n")
    bench = tmp_path / "HumanEval.jsonl"
    bench.write_text(json.dumps({"task_id": "HumanEval/0", "canonical_solution": "    return 1\n"}) + "\n")
    out = tmp_path / "out"
    code = inverse_instruct.main([
        f"--input={corpus}", "--instruction-column=instruction", "--response-column=output", "--stages=extract",
        "--decontam-source", f"--benchmark=humaneval={bench}", f"--output={out}", "--quiet"])
    line = _one_error_line(capsys, code, inverse_instruct.JOB.prog)
    assert f"--benchmark humaneval={bench}" in line and "no 'prompt' field" in line, line
    assert not (out / RUN_FILE).exists()


@pytest.mark.parametrize("text, wanted", [
    (json.dumps(PROBLEM) + "\n{oops\n", "problems.jsonl:2: not JSON"),
    (json.dumps({k: v for k, v in PROBLEM.items() if k != "test"}) + "\n", "problem 't/0' lacks test"),
    ("", "holds no problems"),
    (json.dumps({**PROBLEM, "canonical_solution": None}) + "\n", "have no canonical_solution (first: t/0)"),
    # a test that cannot run would fail every sample, each counted as the model's failure
    (json.dumps({**PROBLEM, "test": "assert True\n"}) + "\n", "t/0: the test code defines no check()"),
    (json.dumps({**PROBLEM, "test": "raise RuntimeError('broken')\ndef check(c):\n    pass\n"}) + "\n",
     "t/0: the benchmark's own prompt or test does not run: RuntimeError('broken')"),
])
def test_a_bad_problems_file_is_one_line_and_exit_2_before_run_json(tmp_path, capsys, text, wanted):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(text)
    out = tmp_path / "out"
    code = evaluate.main(["--reference-solutions", f"--problems={problems}", f"--output={out}", "--quiet"])
    line = _one_error_line(capsys, code, evaluate.JOB.prog)
    assert str(problems) in line and wanted in line, line
    assert not (out / RUN_FILE).exists()


def test_a_bad_benchmark_file_given_by_name_is_refused_too(tmp_path, capsys):
    bench = tmp_path / "HumanEvalPlus.jsonl"
    bench.write_text(json.dumps({k: v for k, v in PROBLEM.items() if k != "entry_point"}) + "\n")
    out = tmp_path / "out"
    code = evaluate.main(["--reference-solutions", f"--benchmark=humaneval_plus={bench}", f"--output={out}",
                          "--quiet"])
    line = _one_error_line(capsys, code, evaluate.JOB.prog)
    assert str(bench) in line and "lacks entry_point" in line, line
    assert not (out / RUN_FILE).exists()
