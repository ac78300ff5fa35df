import pytest

from transforms.selfplay import training_text as T

F = "def f(x: int, a=3):\n    return x * a == 12"


def test_an_example_is_f_g_and_the_assert_separated_by_blank_lines():
    assert T.training_example(F, "\n    return 12 // a\n") == (
        "def f(x: int, a=3):\n    return x * a == 12\n\ndef g(a=3):\n    return 12 // a\n\nassert f(g())\n\n")


def test_g_is_stripped_of_surrounding_backslashes_and_whitespace():
    assert "def g(a=3):\n    return 4\n\nassert" in T.training_example(F, "\n    return 4\n\\")
    assert "def g(a=3):\n    return 4\n\nassert" in T.training_example(F, "\n    return 4  \n\n")


def test_a_puzzle_keeps_its_shortest_distinct_solutions_up_to_the_limit():
    bodies = ["\n    return 4", "\n    return 2 + 2", "\n    return 4", "\n    return 8 // 2", "\n    return 1 + 3"]
    examples = T.puzzle_examples(F, bodies, max_sols_per_puzzle=3)
    # "2 + 2" and "1 + 3" tie on length: the first seen comes first; "8 // 2" is longer and falls off.
    assert [e.split("def g(a=3):")[1].split("\n\nassert")[0] for e in examples] == [
        "\n    return 4", "\n    return 2 + 2", "\n    return 1 + 3"]


def test_examples_are_deduplicated_across_puzzles_and_weird_signatures_counted():
    weird = "def f(x: int,\n      a=3):\n    return x * a == 12"
    examples, skipped = T.build_examples([(F, ["\n    return 4"]), (F, ["\n    return 4", "\n    return 2 * 2"]),
                                          (weird, ["\n    return 4", "\n    return 4", "\n    return 5"])])
    assert len(examples) == 2 and len(set(examples)) == 2
    assert skipped == 2  # two distinct bodies of the weird puzzle


def test_cap_is_a_seeded_shuffle_then_a_cut():
    examples = [f"e{i}" for i in range(100)]
    capped = T.cap_examples(examples, 10, seed=5)
    assert len(capped) == 10 and set(capped) <= set(examples)
    assert capped == T.cap_examples(examples, 10, seed=5) != T.cap_examples(examples, 10, seed=6)
    assert sorted(T.cap_examples(examples, 1000, seed=5)) == sorted(examples)


def test_caps_per_iteration_and_the_text_is_the_concatenation():
    assert (T.example_cap(0), T.example_cap(1), T.example_cap(2)) == (25_000, 1_000_000, 1_000_000)
    with pytest.raises(ValueError):
        T.example_cap(-1)
    assert T.training_text(["a\n\n", "b\n\n"]) == "a\n\nb\n\n"
