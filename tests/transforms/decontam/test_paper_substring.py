"""The paper's decontamination: Magicoder's ``find_substrings`` over HumanEval, MBPP, APPS, GSM8K and DS-1000.

Fixture files are written here in each benchmark's public format (the data does not ship). The expected
strings are spelled out from Magicoder's ``benchmark_data.py`` (ise-uiuc/magicoder), not computed by the
code under test.
"""
from __future__ import annotations

import json

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.decontam import benchmarks as B
from transforms.decontam.methods import DecontamConfig, DecontamIndex
from transforms.decontam.options import DecontamOptions, benchmark_specs, decontam_config

COLUMNS = ("instruction", "response")
MBPP_CODE = "def double_all(xs):\r\n  return [x * 2 for x in xs]\r\n"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture()
def paper_paths(tmp_path):
    mbpp = write_jsonl(tmp_path / "mbpp.jsonl", [
        {"task_id": t, "text": f"Write a function to double every element of list number {t}. ",
         "code": MBPP_CODE, "test_list": [f"assert double_all([{t}]) == [{2 * t}]"], "test_setup_code": "",
         "challenge_test_list": []} for t in (3, 11, 12)])
    apps = write_jsonl(tmp_path / "apps_test.jsonl", [{
        "problem_id": 0, "question": "\nGiven an integer n, print the sum of its decimal digits.\n",
        "solutions": json.dumps(["print(sum(map(int, input())))"]),
        "input_output": json.dumps({"inputs": ["12\n"], "outputs": ["3\n"]}), "difficulty": "interview",
        "url": "u", "starter_code": ""}])
    gsm8k = write_jsonl(tmp_path / "test.jsonl", [{
        "question": "Janet has 3 apples and buys 4 more. How many apples does she have?  ",
        "answer": "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"}])
    ds1000 = write_jsonl(tmp_path / "ds1000.jsonl", [{
        "prompt": "Problem:\nHow do I double a numpy array a?\nA:\n<code>\nimport numpy as np\n</code>\n"
                  "BEGIN SOLUTION\n<code>", "reference_code": "result = a * 2",
        "metadata": {"problem_id": 0, "library": "Numpy"}, "code_context": "def test(): pass"}])
    return {"mbpp": mbpp, "apps": apps, "gsm8k": gsm8k, "ds1000": ds1000, "humaneval": None}


def test_gsm8k_loader_reads_the_public_format(paper_paths, tmp_path):
    [item] = B.load_gsm8k(paper_paths["gsm8k"])
    assert item.prompt == "Janet has 3 apples and buys 4 more. How many apples does she have?"
    assert item.tests == ("She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",) and item.solutions == ()
    assert B.BenchmarkSpec.parse(f"gsm8k={paper_paths['gsm8k']}").load() == [item]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "x", "solution": "y"}])
    with pytest.raises(ValueError, match="'question' and 'answer'"):
        B.load_gsm8k(bad)


def test_paper_registry_names_its_benchmarks_and_what_is_missing(paper_paths):
    assert B.PAPER_BENCHMARKS == ("mbpp", "humaneval", "apps", "gsm8k", "ds1000")
    specs = B.paper_benchmark_specs(paper_paths)
    assert [(s.name, s.path) for s in specs] == [(n, paper_paths[n]) for n in B.PAPER_BENCHMARKS]
    with pytest.raises(ValueError, match="needs apps, gsm8k: give each as --benchmark NAME=PATH"):
        B.paper_benchmark_specs({"mbpp": paper_paths["mbpp"], "ds1000": paper_paths["ds1000"]})


def test_magicoder_strings_are_theirs(paper_paths):
    items = B.load_benchmarks(B.paper_benchmark_specs(paper_paths))
    groups = B.magicoder_strings(items)
    assert list(groups) == ["mbpp_docstrings", "mbpp_solutions", "humaneval_docstrings", "humaneval_solutions",
                            "apps_docstrings", "gsm8k_docstrings", "ds1000_prompts"]
    # MBPP: test split (11..510) only, text and code as they are (not stripped, \r\n kept).
    assert groups["mbpp_docstrings"] == [("11", "Write a function to double every element of list number 11. "),
                                         ("12", "Write a function to double every element of list number 12. ")]
    assert groups["mbpp_solutions"] == [("11", MBPP_CODE), ("12", MBPP_CODE)]
    # HumanEval: every docstring; every stripped solution but the three their hand list really matches.
    assert len(groups["humaneval_docstrings"]) == 164
    kept = dict(groups["humaneval_solutions"])
    assert len(kept) == 161 and {"HumanEval/53", "HumanEval/23", "HumanEval/41"}.isdisjoint(kept)
    assert kept["HumanEval/28"] == "return ''.join(strings)"  # their 4th entry is a typo that matches nothing
    # APPS: the stripped question, no solutions; GSM8K: the stripped question; DS-1000: the prompt up to
    # the solution marker, not stripped.
    assert groups["apps_docstrings"] == [("0", "Given an integer n, print the sum of its decimal digits.")]
    assert groups["gsm8k_docstrings"] == [("0", "Janet has 3 apples and buys 4 more. How many apples does she have?")]
    assert groups["ds1000_prompts"] == [("0", "Problem:\nHow do I double a numpy array a?\nA:\n<code>\n"
                                              "import numpy as np\n</code>\n")]


def test_paper_substring_check_flags_like_find_substrings(paper_paths):
    items = B.load_benchmarks(B.paper_benchmark_specs(paper_paths))
    index = DecontamIndex.build(items, DecontamConfig(methods=("substring",), substring_variant="magicoder"))

    def reason(instruction, response=""):
        [evidence] = index.check({"instruction": instruction, "response": response}, COLUMNS) or [None]
        return evidence and (evidence["filter_reason"], evidence["task_id"])

    assert reason("I HAVE A QUESTION. janet has 3 apples and buys 4 more. how many apples does she have?") == (
        "gsm8k_docstrings_match", "0")
    assert reason("x", "def add(x: int, y: int):\n    return x + y\n") is None  # on their hand list
    assert reason("x", "def concatenate(strings):\n    return ''.join(strings)\n") == (
        "humaneval_solutions_match", "HumanEval/28")
    assert reason("Write a function to double every element of list number 11. ") == ("mbpp_docstrings_match", "11")
    assert reason("Write a function to double every element of list number 3. ") is None  # not the test split
    assert reason("x", "print(sum(map(int, input())))") is None  # APPS solutions are not guarded
    # The columns are joined with "\n\n" and lower-cased, so a string may span them.
    assert reason("how do i double a numpy array a?", "") is None
    assert reason("Problem:\nHow do I double a numpy array a?\nA:\n<code>\nimport numpy as np\n</code>\n") == (
        "ds1000_prompts_match", "0")
    project = DecontamIndex.build(items, DecontamConfig(methods=("substring",)))
    assert project.check({"instruction": "x", "response": "def add(x, y):\n    return x + y\n"}, COLUMNS) == []
    assert project.describe()["substring_strings"] != index.describe()["substring_strings"]


def test_options_for_the_paper_setup(paper_paths):
    args = ["--decontam-methods", "substring", "--substring-variant", "magicoder"]
    for name in B.PAPER_BENCHMARKS:
        args += ["--benchmark", name if paper_paths[name] is None else f"{name}={paper_paths[name]}"]
    options = PipelineOptions(args)
    config = decontam_config(options)
    assert config.methods == ("substring",) and config.substring_variant == "magicoder"
    assert [s.name for s in benchmark_specs(options)] == list(B.PAPER_BENCHMARKS)
    defaults = decontam_config(PipelineOptions([]))
    assert defaults == DecontamConfig() and defaults.methods == ("ngram", "signature")
    tuned = decontam_config(PipelineOptions(["--phrase-min-words", "6", "--ngram-structure-floor", "0"]))
    assert (tuned.phrase_min_words, tuned.structure_floor) == (6, 0.0)
    with pytest.raises(SystemExit):
        PipelineOptions(["--substring-variant", "bigcode"]).view_as(DecontamOptions)


def test_mbpp_entry_point_comes_from_its_tests_and_is_guarded_by_signature(paper_paths):
    assert B.called_function(['assert remove_Occ("hello","l") == "heo"']) == "remove_Occ"
    assert B.called_function(["assert math.isclose(volume_sphere(10), 4188.79, rel_tol=0.001)"]) == "volume_sphere"
    assert B.called_function(["assert set(similar_elements((3, 4),(5, 4))) == set((4,))"]) == "similar_elements"
    assert B.called_function(["assert not is_not_prime(2)"]) == "is_not_prime"
    assert B.called_function(["print(1)"]) == ""
    items = B.load_mbpp(paper_paths["mbpp"])
    assert {i.entry_point for i in items} == {"double_all"}
    index = DecontamIndex.build(items, DecontamConfig())
    copy = {"instruction": "", "response": "def double_all(xs):\n    return [2 * x for x in xs]\n"}
    assert index.check(copy, COLUMNS) == []  # 2 * x is not x * 2: another body
    copy["response"] = "def double_all(xs):\n    # double\n    return [x * 2 for x in xs]\n"
    assert [e["method"] for e in index.check(copy, COLUMNS)] == ["signature"]


def test_paper_coverage_adds_the_shipped_humaneval_and_names_the_benchmarks_without_a_file(paper_paths):
    mbpp = B.BenchmarkSpec(name="mbpp", path=paper_paths["mbpp"])
    gsm8k = B.BenchmarkSpec(name="gsm8k", path=paper_paths["gsm8k"])
    user = B.BenchmarkSpec(name="mine", path="x.jsonl", fields=(("prompt", "q"),))
    checked, missing = B.paper_coverage([user, gsm8k, mbpp])
    assert [s.name for s in checked] == ["mbpp", "humaneval", "gsm8k", "mine"]  # paper order, then the others
    assert missing == ["apps", "ds1000"]
    checked, missing = B.paper_coverage([])
    assert [(s.name, s.path) for s in checked] == [("humaneval", None)] and missing == ["mbpp", "apps", "gsm8k",
                                                                                         "ds1000"]
    every = [B.BenchmarkSpec(name=n, path=paper_paths[n]) for n in B.PAPER_BENCHMARKS]
    assert B.paper_coverage(every) == (every, [])
    assert "--benchmark apps=PATH (codeparrot/apps" in B.missing_paper_benchmarks_hint(["apps"])
