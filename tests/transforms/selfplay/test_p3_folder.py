"""A P3 folder that is not one (a file, a missing or broken JSON file, a split without families, a puzzle without
its fields) is refused by ``load_p3`` with one ``ValueError`` naming the file and the problem, and the solve prefix
the jobs build is checked with it (``check_p3_folder``); ``select_solutions`` refuses a limit below 1."""
from __future__ import annotations

import json

import pytest

from transforms.selfplay.p3 import load_p3
from transforms.selfplay.solve import Attempt, check_p3_folder, select_solutions

TUTORIALS = [f"Tutorial{i}" for i in range(1, 6)]  # the solve prefix's families (self_play_paper.yaml)


def _row(name: str, answer: int) -> dict:
    return {"name": name, "sat": f"def sat(x: int):\n    return x == {answer}", "ans_type": "int",
            "sol_header": "def sol():", "sol_docstring": "", "sol_bodies": [f"    return {answer}"], "module": "m.py"}


def _folder(tmp_path, rows=None, split=None, name="p3"):
    folder = tmp_path / name
    folder.mkdir()
    rows = rows if rows is not None else [_row(f"{f}:0", i) for i, f in enumerate([*TUTORIALS, "Test"])]
    split = split if split is not None else {"train": TUTORIALS, "test": ["Test"]}
    (folder / "puzzles.json").write_text(rows if isinstance(rows, str) else json.dumps(rows))
    (folder / "split.json").write_text(split if isinstance(split, str) else json.dumps(split))
    return folder


def test_a_well_formed_folder_loads(tmp_path):
    p3 = check_p3_folder(_folder(tmp_path))
    assert [p.name for p in p3.test] == ["Test:0"] and len(p3.train) == 5


def _error(folder) -> str:
    with pytest.raises(ValueError) as err:
        load_p3(folder)
    return str(err.value)


def test_a_missing_split_file_is_named(tmp_path):
    folder = _folder(tmp_path)
    (folder / "split.json").unlink()
    assert _error(folder) == f"{folder}/split.json does not exist (a P3 folder holds puzzles.json and split.json)"


def test_a_missing_puzzles_file_is_named(tmp_path):
    folder = _folder(tmp_path)
    (folder / "puzzles.json").unlink()
    assert f"{folder}/puzzles.json does not exist" in _error(folder)


@pytest.mark.parametrize("text, wanted", [
    ("", "puzzles.json is empty"),
    ("  \n", "puzzles.json is empty"),
    ('[{"name": "Tutorial1:0", "sat": "def sat(', "puzzles.json is not valid JSON"),
    ("[]", "puzzles.json holds no puzzle"),
    ('{"name": "x"}', "puzzles.json holds a dict, not a list of puzzles"),
])
def test_an_empty_or_truncated_puzzles_file_is_named(tmp_path, text, wanted):
    folder = _folder(tmp_path, rows=text)
    assert f"{folder}/{wanted}" in _error(folder)


def test_a_truncated_split_file_is_named(tmp_path):
    folder = _folder(tmp_path, split='{"train": ["Tutorial1"')
    assert f"{folder}/split.json is not valid JSON" in _error(folder)


@pytest.mark.parametrize("field", ["ans_type", "sat", "sol_header", "name"])
def test_a_puzzle_without_a_field_is_named_with_the_field(tmp_path, field):
    rows = [_row(f"{f}:0", i) for i, f in enumerate([*TUTORIALS, "Test"])]
    del rows[2][field]
    folder = _folder(tmp_path, rows=rows)
    message = _error(folder)
    assert f"{folder}/puzzles.json: entry 2" in message and f"lacks '{field}'" in message
    if field != "name":
        assert "(Tutorial3:0)" in message


def test_a_field_of_the_wrong_type_is_named(tmp_path):
    rows = [_row(f"{f}:0", i) for i, f in enumerate([*TUTORIALS, "Test"])]
    rows[0]["sol_bodies"] = "    return 0"
    assert "'sol_bodies' of the wrong type" in _error(_folder(tmp_path, rows=rows))


@pytest.mark.parametrize("split, wanted", [
    ({"train": [], "test": ["Test"]}, "the 'train' list is empty"),
    ({"train": TUTORIALS, "test": []}, "the 'test' list is empty"),
    ({"train": TUTORIALS}, "lacks ['test']"),
    ({"train": "Tutorial1", "test": ["Test"]}, "'train' must be a list of family names"),
    ([TUTORIALS, ["Test"]], "holds a list, not an object"),
])
def test_a_split_without_families_is_named(tmp_path, split, wanted):
    folder = _folder(tmp_path, split=split)
    assert _error(folder).startswith(f"{folder}/split.json") and wanted in _error(folder)


def test_training_families_without_any_instance_are_named(tmp_path):
    folder = _folder(tmp_path, split={"train": ["Nowhere"], "test": ["Test"]})
    assert "has no instance of any training family" in _error(folder)


def test_a_file_given_as_the_folder_is_refused(tmp_path):
    folder = _folder(tmp_path)
    assert _error(folder / "puzzles.json") == (f"{folder}/puzzles.json is not a folder: P3 is a folder holding "
                                               "puzzles.json and split.json")
    assert "does not exist" in _error(tmp_path / "nowhere")


def test_the_solve_prefix_families_are_checked_with_the_folder(tmp_path):
    rows = [_row(f"{f}:0", i) for i, f in enumerate([*TUTORIALS[:4], "Other", "Test"])]
    folder = _folder(tmp_path, rows=rows, split={"train": [*TUTORIALS[:4], "Other"], "test": ["Test"]})
    assert len(load_p3(folder).train) == 5  # a folder P3 reads, but the solve prefix cannot be built from it
    with pytest.raises(ValueError, match="the solve prefix needs the training families \\['Tutorial5'\\]"):
        check_p3_folder(folder)
    check_p3_folder(folder, with_prefix=False)


def _attempt(i: int, body: str) -> Attempt:
    return Attempt(index=i, body=body, passed=True)


@pytest.mark.parametrize("limit", [0, -1])
def test_select_solutions_refuses_a_limit_below_one(limit):
    attempts = [_attempt(0, "    return 12"), _attempt(1, "    return 1")]
    assert select_solutions(attempts, 1) == ["    return 1"]
    with pytest.raises(ValueError, match=f"max_sols_per_puzzle must be at least 1, got {limit}"):
        select_solutions(attempts, limit)


def test_a_folder_is_read_once_while_unchanged_and_again_once_edited(tmp_path):
    folder = _folder(tmp_path)
    first = load_p3(folder)
    assert load_p3(folder) is first  # a job's checks and its pipeline share one read
    rows = [_row(f"{f}:0", i) for i, f in enumerate([*TUTORIALS, "Test"])] + [_row("Test:1", 99)]
    (folder / "puzzles.json").write_text(json.dumps(rows))
    again = load_p3(folder)
    assert again is not first and again.instances == len(rows)
