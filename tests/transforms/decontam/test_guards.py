"""The guards for what 10-grams cannot see: signatures of short solutions, short docstrings as phrases, and
the structural check of reordered near misses. Each is shown catching its case and not catching the
look-alike next to it."""
from __future__ import annotations

import ast
import pickle

import pytest

from tests.transforms.decontam import disguises
from transforms.decontam import benchmarks as B
from transforms.decontam import signatures
from transforms.decontam.methods import DecontamConfig, DecontamIndex

COLUMNS = ("instruction", "code")


def methods_flagging(index, record):
    return {(e["method"], e["task_id"]) for e in index.check(record, COLUMNS)}


# ------------------------------------------------------------------------------------------ signature


@pytest.mark.parametrize("code", [
    "def truncate_number(number: float) -> float: return number % 1.0\n",
    "def truncate_number(number):\n\treturn (number % 1.)  # the fraction\n",
    "class Maths:\n    @staticmethod\n    def truncateNumber(number: float) -> float:\n        return number % 1.0\n",
    "Here you go:\n```python\ndef truncate_number(number: float) -> float:\n    '''Fraction.'''\n"
    "    return number % 1.0\n```\nHope it helps!",
])
def test_a_short_solution_is_caught_by_its_signature_and_body(index, code):
    assert ("signature", "HumanEval/2") in methods_flagging(index, {"instruction": "Write it.", "code": code})


@pytest.mark.parametrize("code", [
    "def add(a, b):\n    'Same as a + b.'\n    return a + b\n",  # operator.add: other parameter names
    "def add(x: int, y: int) -> int:\n    return x - y\n",  # same signature, another body
    "def add(self, x, y):\n    self.items.append((x, y))\n",
    "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n",
    "def truncate_number(number: float) -> int:\n    return number % 1.0\n",  # another return type
    "def truncate_number(value: float) -> float:\n    return value % 1.0\n",  # another parameter name
    "def add(x, y):\n    pass\n",  # a stub without types says nothing
])
def test_a_shared_name_alone_is_not_enough(index, code):
    assert not [m for m, _ in methods_flagging(index, {"instruction": "", "code": code}) if m == "signature"]


def test_a_fully_typed_signature_quoted_in_an_instruction_is_a_stub_match(index):
    record = {"instruction": "Implement `def has_close_elements(numbers: List[float], threshold: float) -> bool` "
                             "for my homework.", "code": ""}
    [evidence] = [e for e in index.check(record, COLUMNS) if e["method"] == "signature"]
    assert evidence["task_id"] == "HumanEval/0" and evidence["body"].startswith("stub")
    start, end = evidence["span"]
    assert record["instruction"][start:end].startswith("def has_close_elements(")
    untyped = {"instruction": "Implement def has_close_elements(numbers, threshold) please", "code": ""}
    assert not [e for e in index.check(untyped, COLUMNS) if e["method"] == "signature"]


def test_signature_shapes():
    [shape] = signatures.functions_in_text("def camelCase(self, x: typing.List[int], *rest) -> 'Dict':\n  return x")
    assert (shape.name, shape.params, shape.annotations, shape.returns) == (
        "camelcase", ("x", "rest"), ("list[int]", None), "dict")
    # Reordering independent statements, renaming and annotations leave the body key alone ...
    a = "def f(xs):\n    s = 0\n    n: int = len(xs)\n    for x in xs:\n        s += x\n    return s / n\n"
    b = ("def g(values):\n    count = len(values)\n    total = 0\n    for v in values:\n        total += v\n"
         "    return total / count\n")
    c = "def f(xs):\n    s = 0\n    n = len(xs)\n    for x in xs:\n        s -= x\n    return s / n\n"
    key = lambda src: signatures.functions_in_text(src)[0].body_key
    assert key(a) == key(b) != key(c)
    # ... and a builtin the body rebinds is a name like any other.
    assert key("def f(l):\n    sum = 0\n    for x in l:\n        sum += x\n    return sum\n") == \
        key("def f(l):\n    acc = 0\n    for x in l:\n        acc += x\n    return acc\n")
    assert key("def f(x):\n    '''Doc.'''\n    ...\n") is None


def test_unparseable_surroundings_are_cut_by_indentation():
    text = ("Sure! Try this:\n\n    def strlen(string: str) -> int:\n        return len(string)\n\n"
            "It returns the length.")
    [shape] = signatures.functions_in_text(text, {"strlen"})
    assert shape.params == ("string",) and shape.body_key and text[shape.start:shape.end].startswith("def strlen")


# -------------------------------------------------------------------------------------------- phrases


def test_a_short_docstring_inside_chatter_is_a_phrase_match(index):
    record = {"instruction": "ok so. return LENGTH of given string!! how would I do that in rust?", "code": ""}
    [evidence] = index.check(record, COLUMNS)
    assert (evidence["method"], evidence["task_id"], evidence["view"]) == ("ngram", "HumanEval/23", "phrase")
    assert evidence["threshold"] == 1.0 and evidence["score"] == 1.0
    start, end = evidence["span"]
    assert record["instruction"][start:end] == "return LENGTH of given string"


@pytest.mark.parametrize("instruction", [
    "Return the length of a given string.",  # not the phrase: words in between
    "Return length of string",  # part of it
    "given string length of return",  # its words, another order
])
def test_near_phrases_are_not_matched(index, instruction):
    assert not index.check({"instruction": instruction, "code": ""}, COLUMNS)


def test_phrase_floor_is_configurable(items):
    record = {"instruction": "please: Return length of given string", "code": ""}
    assert DecontamIndex.build(items, DecontamConfig(phrase_min_words=5)).check(record, COLUMNS)
    assert not DecontamIndex.build(items, DecontamConfig(phrase_min_words=6)).check(record, COLUMNS)
    assert not DecontamIndex.build(items, DecontamConfig(phrase_min_words=0)).check(record, COLUMNS)
    with pytest.raises(ValueError, match="phrase_min_words"):
        DecontamConfig(phrase_min_words=10)


# ------------------------------------------------------------------------------------------ structure


def renamed_everything(item: B.BenchmarkItem) -> str:
    """Docstring gone, every name renamed (the entry point and its parameters too), independent
    statements reordered: what n-grams find hardest."""
    tree = ast.parse(disguises.strip_docstrings(item.prompt + item.solutions[0]))
    tree = disguises.rename_locals(tree, entry_point="")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == item.entry_point:
            node.name = "solve"
        elif isinstance(node, ast.Name) and node.id == item.entry_point:
            node.id = "solve"
    tree, swaps = disguises.reorder_independent(tree)
    assert swaps
    return ast.unparse(tree)


# HumanEval/20 reordered the same way scores 0.49 against itself, but 0.57 against its sibling HumanEval/0
# (the same nested loops), so it is flagged either way; these two have no such sibling.
@pytest.mark.parametrize("task", ["HumanEval/156", "HumanEval/163"])
def test_reordered_long_solution_under_the_threshold_is_caught_by_its_structure(items, index, task):
    item = next(i for i in items if i.task_id == task)
    code = renamed_everything(item)
    no_structure = DecontamIndex.build(items, DecontamConfig(structure_floor=0))
    assert not no_structure.check({"instruction": "", "code": code}, COLUMNS)  # the miss this fixes
    [evidence] = index.check({"instruction": "", "code": code}, COLUMNS)
    assert (evidence["method"], evidence["task_id"], evidence["verified_by"]) == ("ngram", task, "canonical_body")
    assert evidence["structure_floor"] <= evidence["score"] < evidence["threshold"]
    # One changed operator is another program: no structural match.
    tree = ast.parse(code)
    node = next(n for n in ast.walk(tree) if isinstance(n, (ast.BinOp, ast.AugAssign)))
    node.op = ast.Sub() if not isinstance(node.op, ast.Sub) else ast.Add()
    assert not index.check({"instruction": "", "code": ast.unparse(tree)}, COLUMNS)


def test_index_with_the_new_guards_survives_pickling(items, index):
    record = {"instruction": "", "code": "def truncate_number(number):\n    return number % 1.0\n"}
    clone = pickle.loads(pickle.dumps(index))
    assert clone.check(record, COLUMNS) == index.check(record, COLUMNS) != []
    assert clone.describe()["signature_functions"] == 164


def test_signature_looks_only_at_what_the_methods_before_it_left_clean(items, index):
    item = next(i for i in items if i.task_id == "HumanEval/0")
    exact = {"instruction": "", "code": item.prompt + item.solutions[0]}
    assert [e["method"] for e in index.check(exact, COLUMNS)] == ["ngram"]
    alone = DecontamIndex.build(items, DecontamConfig(methods=("signature",)))
    assert [(e["method"], e["task_id"]) for e in alone.check(exact, COLUMNS)] == [("signature", "HumanEval/0")]
    first = DecontamIndex.build(items, DecontamConfig(methods=("signature", "ngram")))
    assert [e["method"] for e in first.check(exact, COLUMNS)] == ["signature", "ngram"]


def test_default_decontaminate_transform_rejects_a_short_copy_with_signature_evidence():
    import json

    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.decontam.beam import Decontaminate

    records = [{"id": "short", "instruction": "Write it.", "code": "def strlen(string):\n  return len(string)\n"},
               {"id": "clean", "instruction": "Write it.", "code": "def size(s):\n    return len(s) + 1\n"}]
    with beam.Pipeline(runner="DirectRunner") as p:
        result = p | beam.Create(records) | Decontaminate(stage="decontam_test", record_kind="source_pair")
        assert_that(result.main | beam.Map(lambda r: r["id"]), equal_to(["clean"]), label="Kept")
        assert_that(result.rejected | beam.Map(lambda r: (json.loads(r["detail"])["method"],
                                                          json.loads(r["detail"])["task_id"])),
                    equal_to([("signature", "HumanEval/23")]), label="Rejected")
