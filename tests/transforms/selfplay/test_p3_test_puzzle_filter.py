"""The filter refuses a generated puzzle that is a P3 test puzzle up to formatting and renaming
(``p3_test_puzzle``), and never a P3 training puzzle or the project's seed puzzles.

The copies are made here, from the text of ``puzzles.json`` and without the fingerprint's code: names are renamed
token by token (``tokenize``), quotes swapped, comments, blank lines and a docstring added."""
from __future__ import annotations

import io
import json
import tokenize

import pytest

from transforms.selfplay import filters
from transforms.selfplay.beam import SandboxSettings, filter_sample
from transforms.selfplay.preset import load_preset
from transforms.selfplay.puzzle_fingerprint import fingerprint_index

# Test families with every local the puzzle binds, renamed by hand (parameters, loop variables, nested functions).
RENAMES = {
    "SumProduct": {"nums": "values", "tot": "wanted_sum", "prod": "wanted_product", "p": "acc", "n": "v"},
    "ThreeCycle": {"s": "text", "target": "goal", "cycle3": "rotate", "trip": "chunk", "i": "k"},
    "Fib4": {"init": "start", "target": "want", "a": "w", "b": "x", "c": "y", "d": "z", "i": "_"},
    "CharSum": {"tot": "remaining", "s": "letters", "c": "ch"},
    "LargestPrimeFactor": {"p": "factor", "n": "number", "is_prime": "prime", "m": "q", "i": "j"},
    "FindContainers": {"containers": "found", "strings": "words", "substring": "part", "i": "pos", "s": "w"},
}
INSTANCES = [f"{family}:{i}" for family in RENAMES for i in (0, 3)]  # the first instance and a later one


@pytest.fixture(scope="module")
def raw_p3(shared_data):
    rows = json.loads((shared_data / "p3" / "puzzles.json").read_text(encoding="utf-8"))
    splits = json.loads((shared_data / "p3" / "split.json").read_text(encoding="utf-8"))
    return {r["name"]: r for r in rows}, set(splits["train"]), set(splits["test"])


@pytest.fixture(scope="module")
def test_index(p3_data):
    return fingerprint_index((p.name, p.f) for p in p3_data.test_instances)


def _family(name: str) -> str:
    return name.split(":")[0]


def hand_edit(source: str, renames: dict[str, str], function: str) -> str:
    """``source`` with ``def sat`` renamed to ``function``, the names of ``renames`` renamed (not attributes), single
    quotes turned double and double single, a docstring, comments and blank lines added."""
    renames = {"sat": function, **renames}
    out: list[tuple[int, str]] = []
    previous = ""
    docstring_due = True
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        kind, text = tok.type, tok.string
        if kind == tokenize.NAME and text in renames and previous != ".":
            text = renames[text]
        elif kind == tokenize.STRING and text[0] in "'\"" and not text.startswith(("'''", '"""')) \
                and "\\" not in text and '"' not in text[1:-1] and "'" not in text[1:-1]:
            text = ('"' if text[0] == "'" else "'") + text[1:-1] + ('"' if text[0] == "'" else "'")
        out.append((kind, text))
        if kind == tokenize.INDENT and docstring_due:
            docstring_due = False
            out += [(tokenize.STRING, '"""A puzzle I just made up.\n\n    Nothing like it exists."""'),
                    (tokenize.NEWLINE, "\n"), (tokenize.NL, "\n"), (tokenize.COMMENT, "# set up"),
                    (tokenize.NL, "\n")]
        elif kind == tokenize.NEWLINE and not docstring_due:
            out[-1] = (tokenize.COMMENT, "  # step")
            out += [(tokenize.NEWLINE, "\n"), (tokenize.NL, "\n")]
        if kind not in (tokenize.NL, tokenize.COMMENT):
            previous = tok.string
    edited = tokenize.untokenize(out)  # spaces between tokens: "def f (" where the model writes "def f("
    return edited.replace(f"def {function} (", f"def {function}(", 1)


def _copies(raw: dict, family: str) -> list[str]:
    sat = raw["sat"]
    return [
        sat.replace("def sat(", "def f("),  # as the model writes it after the prompt's "def f("
        hand_edit(sat, RENAMES[family], "f"),
        hand_edit(sat, {}, "f").replace("    ", "  "),  # two-space indents, docstring and comments
    ]


@pytest.mark.parametrize("name", INSTANCES)
def test_a_test_puzzle_reproduced_with_other_formatting_and_names_is_refused(name, raw_p3, test_index, run_in_process):
    rows, _, test_families = raw_p3
    assert _family(name) in test_families
    copies = _copies(rows[name], _family(name))
    assert len(set(copies)) == len(copies) and all(c != rows[name]["sat"] for c in copies)
    outcomes = filters.filter_puzzles(copies, run_in_process, test_index=test_index)
    assert [o.reason for o in outcomes] == ["p3_test_puzzle"] * len(copies), [o.puzzle for o in outcomes]
    # under another function name too (the seed preset renames its f5 to f; the reason itself reads any name)
    renamed = hand_edit(rows[name]["sat"], RENAMES[_family(name)], "my_puzzle_9")
    assert filters.p3_test_reason(renamed, test_index) == ("p3_test_puzzle", f"P3 test puzzle {name}")


def test_the_job_s_filter_stage_refuses_it_before_anything_runs(raw_p3, test_index):
    """``filter_sample`` (stage ``self_play.filter``) on a paper-preset sample: the text after ``def f(``. No sandbox
    is given: the refusal comes before any program runs."""
    rows, _, _ = raw_p3
    edited = hand_edit(rows["Fib4:3"]["sat"], RENAMES["Fib4"], "f")
    sample = {"preset": "paper", "head": "def f(", "text": edited[len("def f("):] + "\n\ndef g():\n    pass\n"}
    no_sandbox = SandboxSettings(limits=None, workers=1)
    reason, detail, facts = filter_sample(sample, load_preset().filters, trivial_reject_rate=1.0, seed=0,
                                          sandbox=no_sandbox, test_index=test_index)
    assert (reason, detail) == ("p3_test_puzzle", "P3 test puzzle Fib4:3")
    assert facts["sat"].startswith("def f(start :List [int ],want =") and "A puzzle I just made up" in facts["sat"]
    assert "p3_test_puzzle" in filters.REASONS


def test_a_changed_constant_or_a_training_puzzle_passes(raw_p3, test_index, run_in_process):
    rows, train_families, _ = raw_p3
    changed = rows["SumProduct:0"]["sat"].replace("tot=14", "tot=12345").replace("def sat(", "def f(")
    assert changed not in {r["sat"].replace("def sat(", "def f(") for r in rows.values()}
    train = next(r for n, r in rows.items() if _family(n) in train_families and "List[int]" in r["sat"])
    texts = [changed, train["sat"].replace("def sat(", "def f(")]
    outcomes = filters.filter_puzzles(texts, run_in_process, trivial_reject_rate=0.0, test_index=test_index)
    assert [o.reason for o in outcomes] == [None, None], [(o.reason, o.puzzle) for o in outcomes]


def test_every_test_instance_is_indexed_and_no_training_or_seed_puzzle_collides(p3_data, test_index):
    """P3 has 1,009 instances of its 228 test families; none of the 636 training instances is one of them up to
    formatting and renaming (measured: 0), nor is any of the project's seed puzzles."""
    from transforms.selfplay.puzzles import load_seed_puzzles

    assert len(p3_data.test_instances) == 1009 and len(test_index) == 1009
    assert {p.family for p in p3_data.test_instances} == set(p3_data.test_families)
    hits = [p.name for p in p3_data.train if filters.p3_test_reason(p.f, test_index)]
    assert len(p3_data.train) == 636 and hits == []
    assert [s.name for s in load_seed_puzzles() if filters.p3_test_reason(s.sat, test_index)] == []
