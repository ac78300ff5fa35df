"""Planted contamination from real HumanEval items: ngram catches copies and docstrings pasted or re-flowed into
instructions; substring's misses on disguised code are measured and shown (ngram recall on disguised code is
tested independently in test_disguised_recall.py: ``planting``'s renames and reformats only change what the
code view erases, so ngram recall on them would hold by construction). Clean code sharing common idioms is
not flagged; false-positive rate on the stdlib."""
from __future__ import annotations

import gzip
import json

import pytest

from tests.transforms.decontam import clean_sets
from transforms.decontam import benchmarks as B
from transforms.decontam import planting
from transforms.decontam.methods import DecontamConfig, DecontamIndex

COLUMNS = ("instruction", "code")


@pytest.fixture(scope="session")
def humaneval_rows():
    with gzip.open(B.humaneval_path(), "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def index():
    return DecontamIndex.build(B.load_humaneval(), DecontamConfig(methods=("substring", "ngram")))


@pytest.fixture(scope="session")
def planted(humaneval_rows):
    """{variant: [(task_id, record)]}. Code disguises are planted for every item whose solution is not
    trivial by the registry's rule (a trivial solution identifies no task, so there is nothing to find)."""
    variants = {k: [] for k in ("verbatim", "renamed", "reformatted", "docstring_in_instruction",
                                "docstring_reflowed_in_instruction")}
    for row in humaneval_rows:
        full = row["prompt"] + row["canonical_solution"]
        variants["verbatim"].append((row["task_id"], {"instruction": "Complete the function.", "code": full}))
        doc = B.extract_docstring(row["prompt"])
        longer = "I am stuck on this exercise from my course. {} Please solve it in Python and explain each step."
        variants["docstring_in_instruction"].append(
            (row["task_id"], {"instruction": longer.format(doc), "code": ""}))
        variants["docstring_reflowed_in_instruction"].append(
            (row["task_id"], {"instruction": longer.format(planting.reflow(doc)), "code": ""}))
        if B.is_trivial_solution(row["canonical_solution"]):
            continue
        code_only = planting.without_docstring(full, row["entry_point"])
        variants["renamed"].append(
            (row["task_id"], {"instruction": "Write this function.", "code": planting.rename_identifiers(code_only)}))
        variants["reformatted"].append(
            (row["task_id"], {"instruction": "Write this function.", "code": planting.reformat(code_only)}))
    return variants


def recall(index, records, method):
    found = 0
    for task_id, record in records:
        evidence = [e for e in index.check(record, COLUMNS) if e["method"] == method]
        # Attributed to the planted item (or to its near-twin, listed in also_matched).
        found += bool(evidence) and (evidence[0]["task_id"] == task_id
                                     or f"humaneval:{task_id}" in evidence[0]["also_matched"])
    return found / len(records)


def test_planted_sets_are_real_and_large(planted):
    assert len(planted["verbatim"]) == 164
    assert len(planted["renamed"]) >= 130  # all but the trivially short solutions
    # The disguises really change the text.
    task, rec = planted["renamed"][0]
    assert "renamed_" in rec["code"]


def test_ngram_catches_planted_copies_and_substring_misses_disguises(index, planted, capsys):
    table = {v: (recall(index, recs, "ngram"), recall(index, recs, "substring")) for v, recs in planted.items()}
    with capsys.disabled():
        print("\nplanted HumanEval recall (ngram, substring):", json.dumps(table))
    for variant in ("verbatim", "docstring_in_instruction", "docstring_reflowed_in_instruction"):
        assert table[variant][0] == 1.0, table
    # What the paper's baseline does: exact copies and a verbatim-pasted docstring are caught ...
    assert table["verbatim"][1] == 1.0 and table["docstring_in_instruction"][1] == 1.0
    # ... renamed or reformatted code and a re-flowed docstring mostly slip through.
    assert table["renamed"][1] < 0.05
    assert table["reformatted"][1] < 0.1
    assert table["docstring_reflowed_in_instruction"][1] < 0.2


def test_evidence_names_benchmark_task_method_and_span(index, planted):
    task_id, record = planted["renamed"][5]
    [evidence] = [e for e in index.check(record, COLUMNS) if e["method"] == "ngram"]
    assert evidence["benchmark"] == "humaneval" and evidence["task_id"] == task_id
    assert evidence["field"] == "solution" and evidence["score"] >= evidence["threshold"]
    start, end = evidence["span"]
    assert evidence["column"] == "code" and record["code"][start:end].strip()
    assert record["code"][start:end] in record["code"] and end - start > 20


IDIOMS = [
    "def total(x):\n    s = 0\n    for i in range(len(x)):\n        s += x[i]\n    return s\n",
    "for i in range(len(arr)):\n    for j in range(i + 1, len(arr)):\n        if arr[i] > arr[j]:\n"
    "            arr[i], arr[j] = arr[j], arr[i]\n",
    "if __name__ == '__main__':\n    import sys\n    main(sys.argv[1:])\n",
    "with open(path) as f:\n    for line in f:\n        line = line.strip()\n        if not line:\n"
    "            continue\n        rows.append(line.split(','))\n",
    "result = []\nfor i in range(len(numbers)):\n    if numbers[i] % 2 == 0:\n        result.append(numbers[i])\n"
    "return result\n",
    "def is_palindrome(s):\n    return s == s[::-1]\n",
    "counts = {}\nfor word in words:\n    counts[word] = counts.get(word, 0) + 1\n",
]


def test_common_idioms_are_not_flagged(index):
    for code in IDIOMS:
        record = {"instruction": "Write a Python function that processes a list of numbers.", "code": code}
        assert not [e for e in index.check(record, COLUMNS) if e["method"] == "ngram"], code


@pytest.fixture(scope="session")
def stdlib_functions():
    """Every module- and class-level function of the Python stdlib (tests excluded), as records."""
    return clean_sets.stdlib_functions()


def test_false_positive_rate_on_the_stdlib(index, stdlib_functions, capsys):
    assert len(stdlib_functions) > 5000
    flagged = []
    for start in range(0, len(stdlib_functions), 512):
        batch = stdlib_functions[start:start + 512]
        for record, evidence in zip(batch, index.check_batch(batch, COLUMNS)):
            flagged += [(record["id"], e["task_id"], e.get("score")) for e in evidence if e["method"] == "ngram"]
    rate = len(flagged) / len(stdlib_functions)
    with capsys.disabled():
        print(f"\nstdlib false positives (ngram): {len(flagged)}/{len(stdlib_functions)} = {rate:.4%} {flagged[:5]}")
    assert rate <= 0.001, flagged
