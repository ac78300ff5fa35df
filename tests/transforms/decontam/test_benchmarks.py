"""Benchmark registry: every loader on a tiny file in its public format, the trivial-solution rule, specs."""
from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.decontam import benchmarks as B


def write_jsonl(path, rows, gz=False):
    data = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(data)
    else:
        path.write_text(data)
    return str(path)


SOLUTION = "    result = []\n    for i in range(len(xs)):\n        result.append(xs[i] * 2)\n    return result\n"


def test_humaneval_ships_with_the_package():
    items = B.load_humaneval()
    assert len(items) == 164 and len({i.task_id for i in items}) == 164
    first = items[0]
    assert first.docstring.startswith("Check if in given list of numbers")
    assert first.solutions and "def check(candidate)" in first.tests[0]


def test_trivial_rule_covers_bigcodes_hand_list():
    # bigcode/Magicoder HUMAN_EVAL_STRINGS_OK, verbatim (the last one is what their list literally holds).
    hand_list = ["return x + y", "return len(string)", "return n**2", "return " ".join(strings)"]
    assert all(B.is_trivial_solution(s) for s in hand_list)
    assert not B.is_trivial_solution(SOLUTION)


def test_humaneval_plus_and_mbpp_plus(tmp_path):
    hep = write_jsonl(tmp_path / "HumanEvalPlus.jsonl.gz", [{
        "task_id": "HumanEval/0", "prompt": 'def f(xs):\n    """Double every element of the list xs."""\n',
        "canonical_solution": SOLUTION, "entry_point": "f", "base_input": [[[1, 2]]], "plus_input": [],
        "atol": 0, "contract": ""}], gz=True)
    [item] = B.load_humaneval_plus(hep)
    assert item.docstring == "Double every element of the list xs." and item.tests == ('[[[1, 2]]]',)
    mbpp_plus = write_jsonl(tmp_path / "MbppPlus.jsonl", [{
        "task_id": "Mbpp/2", "prompt": '"""\nWrite a function to double a list.\nassert f([1]) == [2]\n"""\n',
        "canonical_solution": "def f(xs):\n" + SOLUTION, "entry_point": "f", "assertion": "assert f([1]) == [2]",
        "base_input": [], "plus_input": [], "atol": 0}])
    [item] = B.load_mbpp_plus(mbpp_plus)
    assert item.statement.startswith("Write a function to double") and item.tests == ("assert f([1]) == [2]",)


def test_mbpp_keeps_the_test_split_only(tmp_path):
    rows = [{"task_id": t, "text": f"Write a function number {t}.", "code": "def f(xs):\n" + SOLUTION,
             "test_list": [f"assert f([{t}]) == [{2 * t}]"], "test_setup_code": "", "challenge_test_list": []}
            for t in (1, 11, 510, 511)]
    items = B.load_mbpp(write_jsonl(tmp_path / "mbpp.jsonl", rows))
    assert [i.task_id for i in items] == ["11", "510"]
    sanitized = [{"task_id": 12, "prompt": "Write a function.", "code": "x", "test_imports": [], "test_list": ["a"]}]
    assert B.load_mbpp(write_jsonl(tmp_path / "sanitized.jsonl", sanitized))[0].prompt == "Write a function."


def test_ds1000_jsonl_and_directory(tmp_path):
    path = write_jsonl(tmp_path / "ds1000.jsonl", [{
        "prompt": "Problem:\nHow do I double a numpy array?\nA:\n<code>\nimport numpy as np\n</code>\n"
                  "BEGIN SOLUTION\n<code>",
        "reference_code": "result = a * 2", "metadata": {"problem_id": 7, "library": "Numpy"},
        "code_context": "def test_execution(solution):\n    pass"}])
    [item] = B.load_ds1000(path)
    assert item.task_id == "7" and "BEGIN SOLUTION" not in item.prompt and item.solutions == ("result = a * 2",)
    q = tmp_path / "ds1000_data" / "Numpy" / "Insertion" / "q0"
    q.mkdir(parents=True)
    (q / "prompt.txt").write_text("Problem: double it\nA:\n<code>\n### BEGIN SOLUTION\n")
    (q / "reference_code.txt").write_text("result = a * 2")
    [item] = B.load_ds1000(str(tmp_path / "ds1000_data"))
    assert item.task_id == "Numpy/q0" and item.prompt == "Problem: double it\nA:\n<code>\n### "


def test_multipl_e_apps_livecodebench(tmp_path):
    [m] = B.load_multipl_e(write_jsonl(tmp_path / "me.jsonl", [{
        "name": "HumanEval_0_x", "language": "cpp",
        "prompt": "// Double xs\nstd::vector<long> f(std::vector<long> xs) {\n",
        "doctests": "transform", "original": "x.py", "prompt_terminology": "reworded",
        "tests": "}\nint main() { assert(f({1}) == {2}); }", "stop_tokens": ["\n}"]}]))
    assert m.language == "cpp" and m.solutions == () and "assert" in m.tests[0]
    [a] = B.load_apps(write_jsonl(tmp_path / "apps.jsonl", [{
        "problem_id": 4000, "question": "Given n, print 2n.\n", "solutions": json.dumps(["print(2*int(input()))"] * 9),
        "input_output": json.dumps({"inputs": ["1\n"], "outputs": ["2\n"]}), "difficulty": "introductory",
        "url": "u", "starter_code": ""}]))
    assert a.prompt == "Given n, print 2n." and len(a.solutions) == 5 and a.tests == ('["1\\n"]', '["2\\n"]')
    [lcb] = B.load_livecodebench(write_jsonl(tmp_path / "lcb.jsonl", [{
        "question_title": "Double", "question_content": "Print twice n.", "platform": "atcoder",
        "question_id": "abc001_a", "contest_id": "abc001", "contest_date": "2024-01-01", "starter_code": "",
        "difficulty": "easy", "public_test_cases": json.dumps([{"input": "1", "output": "2", "testtype": "stdin"}]),
        "private_test_cases": "eJzLSM3JyQcABiwCFQ==", "metadata": "{}"}]))
    assert lcb.prompt == "Double\nPrint twice n." and lcb.tests == ("1\n2",)  # compressed private tests: not unpickled


def test_p3_uses_test_families_only(tmp_path):
    puzzles = [{"name": f"{fam}:0", "sat": f"def sat(x: int):\n    return x == {i}", "ans_type": "int",
                "sol_header": "def sol():", "sol_docstring": '    """Find the number."""',
                "sol_bodies": ["    return 1"],
                "module": "m.py"} for i, fam in enumerate(["TrainFam", "TestFam"])]
    (tmp_path / "puzzles.json").write_text(json.dumps(puzzles))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["TrainFam"], "test": ["TestFam"]}))
    [item] = B.load_p3(str(tmp_path))
    assert (item.task_id == "TestFam:0" and item.docstring == "Find the number."
            and item.solutions[0].startswith("def sat"))


def test_p3_real_split(shared_data):
    items = B.load_p3(str(shared_data / "p3" / "puzzles.json"))
    test_families = set(json.loads((shared_data / "p3" / "split.json").read_text())["test"])
    assert items and {i.task_id.split(":")[0] for i in items} <= test_families
    assert len(items) == 1009


def test_user_jsonl_and_parquet_with_field_mapping(tmp_path):
    rows = [{"id": "q1", "question": "Double a list.", "answer": "def f(xs):\n" + SOLUTION, "check": "assert f([1])"}]
    fields = B.parse_benchmark_fields(["mine:task_id=id,prompt=question,solution=answer,tests=check"])
    jsonl = write_jsonl(tmp_path / "mine.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mine.parquet")
    for path in (jsonl, str(tmp_path / "mine.parquet")):
        [item] = B.BenchmarkSpec.parse(f"mine={path}", fields).load()
        assert (item.benchmark, item.task_id, item.prompt, item.tests) == (
            "mine", "q1", "Double a list.", ("assert f([1])",))
    with pytest.raises(ValueError, match="no column 'nope'"):
        B.load_user(jsonl, "mine", {"prompt": "nope"})


def test_spec_errors_name_the_fix():
    with pytest.raises(ValueError, match="mbpp=PATH"):
        B.BenchmarkSpec.parse("mbpp")
    with pytest.raises(ValueError, match="--benchmark-fields"):
        B.BenchmarkSpec.parse("private=/x.jsonl")
    with pytest.raises(ValueError, match="ROLE=COLUMN"):
        B.parse_field_mapping("answer")
    assert B.BenchmarkSpec.parse("humaneval").load()[0].benchmark == "humaneval"
