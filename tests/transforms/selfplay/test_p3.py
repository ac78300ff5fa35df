import json

import pytest

from transforms.selfplay.p3 import load_p3, require_train


def _raw(name, sat, sol_header="def sol():", bodies=("    return 1",), ans_type="int"):
    return {"name": name, "sat": sat, "ans_type": ans_type, "sol_header": sol_header,
            "sol_docstring": '    """Doc."""', "sol_bodies": list(bodies), "module": "made_up.py"}


@pytest.fixture
def tiny_p3(tmp_path):
    huge = "1" * 5000  # over Python's 4,300-digit literal limit
    raws = [
        _raw("Zeta:0", "def sat(x: int):\n    return x == 1"),
        _raw("Alpha:0", "def sat(s: str, a='q'):\n    return s == a", "def sol(a='q'):", ("    return a",), "str"),
        _raw("Alpha:1", "def sat(s: str, a='r'):\n    return s == a", "def sol(a='r'):", ("    return a",), "str"),
        _raw("Train:0", f"def sat(x: int, n={huge}):\n    return x == n", f"def sol(n={huge}):", ("    return n",)),
        _raw("Train:1", "def sat(x: int):\n    return x == 2", bodies=("    return 2",)),
        _raw("Loose:0", "def sat(x: int):\n    return x == 3"),
    ]
    (tmp_path / "puzzles.json").write_text(json.dumps(raws))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["Train"], "test": ["Alpha", "Zeta"]}))
    return tmp_path


def test_test_puzzles_are_the_first_instance_of_each_family_in_split_order(tiny_p3):
    p3 = load_p3(tiny_p3)
    assert [p.name for p in p3.test] == ["Alpha:0", "Zeta:0"]
    assert p3.test[0].f == "def f(s: str, a='q'):\n    return s == a"
    assert p3.test[0].sol_header == "def g(a='q'):"
    assert p3.test[0].solutions == ("def g(a='q'):\n    return a",)
    assert p3.test[0].ans_type == "str"
    assert p3.unassigned == 1 and p3.instances == 6


def test_unparsable_instances_are_kept_and_reported(tiny_p3):
    p3 = load_p3(tiny_p3)
    assert [p.name for p in p3.train] == ["Train:0", "Train:1"]
    assert [p.name for p in p3.unparsable] == ["Train:0"]
    assert "4300" in p3.unparsable[0].parse_error
    assert p3.train[1].parse_error is None


def test_prompt_builders_refuse_test_families(tiny_p3):
    p3 = load_p3(tiny_p3)
    assert require_train(p3.train) == list(p3.train)
    with pytest.raises(ValueError, match="training families"):
        require_train([*p3.train, p3.test[0]])
    with pytest.raises(ValueError, match="not a P3 training family"):
        p3.train_family("Alpha")


def test_a_family_in_both_splits_is_an_error(tmp_path):
    (tmp_path / "puzzles.json").write_text(json.dumps([_raw("A:0", "def sat(x: int):\n    return x == 1")]))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["A"], "test": ["A"]}))
    with pytest.raises(ValueError, match="both splits"):
        load_p3(tmp_path)


def test_real_p3_has_228_test_puzzles_in_the_reference_order(p3_data):
    assert len(p3_data.test) == 228 and len(p3_data.train_families) == 155
    # The first entries of the reference's data/test_228.json, by the answer parameter each opens with.
    heads = [p.f.split("\n")[0] for p in p3_data.test[:4]]
    assert heads == ["def f(roots: List[float], coeffs=[1.0, -2.0, -1.0]):", "def f(nums: List[int]):",
                     'def f(prefixes: List[str], s="donesezichethofalij"):', "def f(li: List[int], n=100):"]
    assert all(p.split == "test" and p.name.endswith(":0") for p in p3_data.test)
    assert not {p.family for p in p3_data.train} & {p.family for p in p3_data.test}


def test_real_p3_reports_its_one_unparsable_instance(p3_data):
    assert len(p3_data.train) == 636
    assert [p.name for p in p3_data.unparsable] == ["BoxVolume:1"]
    assert len(p3_data.first_train_instances()) == 155
