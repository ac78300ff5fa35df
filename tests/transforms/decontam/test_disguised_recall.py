"""Recall on independently disguised HumanEval copies, and no false alarm on the stdlib.

The disguises come from ``disguises.py`` (``ast``/``tokenize``/text edits written for this test, not
``planting.py`` and not the normalizer). Each is applied to all 164 items; the code disguises are run
against HumanEval's own tests first, so a "copy" that is not a working copy cannot inflate recall.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from tests.transforms.decontam import clean_sets, disguises
from transforms.decontam import benchmarks as B
from transforms.decontam.methods import DEFAULT_METHODS, DecontamConfig, DecontamIndex

COLUMNS = ("instruction", "code")


@pytest.fixture(scope="module")
def rows():
    with gzip.open(B.humaneval_path(), "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def disguised(rows):
    return disguises.disguise_all(rows)


@pytest.fixture(scope="module")
def index():
    """The default profile's method set."""
    config = DecontamConfig()
    assert config.methods == DEFAULT_METHODS == ("ngram", "signature")
    return DecontamIndex.build(B.load_humaneval(), config)


_HARNESS = """
import json, sys
failed = []
for task_id, source, test, call in json.load(sys.stdin):
    scope = {}
    try:
        exec(source + "\\n" + test + f"\\ncheck({call})\\n", scope)
    except BaseException as err:
        failed.append([task_id, repr(err)[:200]])
print(json.dumps(failed))
"""


@pytest.mark.parametrize("name", disguises.CODE_DISGUISES)
def test_code_disguises_are_working_copies_that_differ_from_the_original(rows, disguised, name):
    cases = []
    changed = []
    for row, (task_id, record) in zip(rows, disguised[name]):
        source, call = disguises.program_for_check(name, record, row["entry_point"])
        cases.append([task_id, source, row["test"], call])
        changed.append(record["code"] != disguises.full_program(row))
    assert len(cases) == 164 and all(changed)
    result = subprocess.run([sys.executable, "-c", _HARNESS], input=json.dumps(cases), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == []


def test_disguises_do_what_they_say(rows, disguised):
    by_task = {name: dict(records) for name, records in disguised.items()}
    truncate = by_task["stripped_two_space"]["HumanEval/2"]["code"]
    assert '"""' not in truncate and "\n  return number % 1.0" in truncate
    assert "Solution" in by_task["class_method"]["HumanEval/2"]["code"]
    assert "float" not in by_task["no_type_hints"]["HumanEval/2"]["code"]
    assert by_task["comments_added"]["HumanEval/0"]["code"].count("#") >= 3
    # Locals renamed and independent statements reordered.
    renamed = by_task["renamed_reordered"]["HumanEval/20"]["code"]
    assert "closest_pair" not in renamed and "distance" not in renamed
    reordered = sum(disguises.reorder_independent(
        disguises.ast.parse(disguises.strip_docstrings(disguises.full_program(r))))[1] > 0 for r in rows)
    assert reordered >= 30
    # Short docstrings: the prose only, inside chatter.
    chat = by_task["short_docstring_chat"]["HumanEval/23"]["instruction"]
    assert "Return length of given string" in chat and "strlen" not in chat
    assert all(len(r["instruction"]) > 60 for _, r in disguised["short_docstring_chat"])


def recall(index, records, method=None):
    assert records
    found = 0
    for (task_id, _), evidence in zip(records, index.check_batch([r for _, r in records], COLUMNS)):
        if method:
            evidence = [e for e in evidence if e["method"] == method]
        # Attributed to the item (or to its near-twin: HumanEval/56 and /61 differ in one character).
        found += any(e["task_id"] == task_id or f"humaneval:{task_id}" in e.get("also_matched", ())
                     for e in evidence)
    return found / len(records)


def test_recall_is_at_least_99_percent_in_every_disguise(index, disguised, capsys):
    assert set(disguised) == set(disguises.DISGUISES) and len(disguised) >= 6
    table = {name: {"default": recall(index, records), "ngram": recall(index, records, "ngram"),
                    "signature": recall(index, records, "signature"),
                    "rejected_at_all": sum(map(bool, index.check_batch([r for _, r in records], COLUMNS)))
                    / len(records)}
             for name, records in disguised.items()}
    with capsys.disabled():
        print("\nrecall on independent disguises, attributed to the right item (default methods; ngram's share; "
              "signature's share, on what ngram left), and the share rejected whatever the attribution:",
              json.dumps({k: {m: round(v, 4) for m, v in row.items()} for k, row in table.items()}))
    assert all(len(records) == 164 for records in disguised.values())
    assert all(row["default"] >= 0.99 for row in table.values()), table


def test_short_solutions_are_caught_by_signature_not_by_ngram(index, disguised):
    by_task = dict(disguised["stripped_two_space"])
    record = by_task["HumanEval/2"]  # def truncate_number(number: float) -> float: return number % 1.0
    assert B.is_trivial_solution("return number % 1.0")
    [evidence] = index.check(record, COLUMNS)
    assert evidence["method"] == "signature" and evidence["task_id"] == "HumanEval/2"
    assert evidence["signature"] == "truncate_number(number: float) -> float"
    assert evidence["body"] == "same canonical body"
    start, end = evidence["span"]
    assert record["code"][start:end].startswith("def truncate_number") and "% 1.0" in record["code"][start:end]


def test_clean_stdlib_functions_are_never_flagged(index, capsys):
    functions = clean_sets.stdlib_functions()
    assert len(functions) > 5000
    names = {f["id"].split(":")[1] for f in functions}
    # The clean set shares names with HumanEval entry points (12 of them): a name alone must not flag.
    assert {"add", "median", "unique", "remove_duplicates", "intersection", "multiply"} <= names
    flagged = []
    for start in range(0, len(functions), 512):
        batch = functions[start:start + 512]
        for record, evidence in zip(batch, index.check_batch(batch, COLUMNS)):
            flagged += [(record["id"], e["method"], e["task_id"]) for e in evidence]
    with capsys.disabled():
        print(f"\nstdlib functions flagged (default methods): {len(flagged)}/{len(functions)} {flagged[:5]}")
    assert flagged == []


def test_code_alpaca_pairs_flagged_by_the_default_methods_are_few_and_explained(index, shared_data, capsys):
    """Real instructions: how many Code Alpaca pairs (instruction + input, output) the default set flags.
    The list is printed for the README; each flag must point at text that is really in the pair."""
    rows = json.loads((shared_data / "code_alpaca_2k.json").read_text(encoding="utf-8"))
    records = [{"instruction": r["instruction"] + (f"\n{r['input']}" if r.get("input") else ""), "code": r["output"]}
               for r in rows]
    assert len(records) > 2000
    flagged = []
    for i, (record, evidence) in enumerate(zip(records, index.check_batch(records, COLUMNS))):
        for e in evidence:
            start, end = e["span"]
            assert record[e["column"]][start:end].strip(), e
            flagged.append((i, e["method"], e["task_id"], " ".join(e["matched_text"].split())[:80]))
    with capsys.disabled():
        print(f"\nCode Alpaca pairs flagged (default methods): {len({f[0] for f in flagged})}/{len(records)}")
        for f in flagged:
            print("  ", f)
    assert len({f[0] for f in flagged}) <= 0.01 * len(records)
