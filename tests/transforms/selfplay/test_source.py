import pytest

from transforms.selfplay.source import (
    WeirdSignature,
    answer_parameter,
    puzzle_inputs,
    remove_docstring,
    solution_body,
    strip_puzzle,
)


def test_strip_puzzle_cuts_at_the_first_line_in_column_zero():
    generated = ("def f(x: int):\n    y = x + 1\n\n    return y == 3\n\ndef f5(s: str):\n    return True\n"
                 "assert f(2)")
    # The cut falls on the second newline of "\n\ndef", so one newline stays; a second pass (the reference
    # strips again in good_puzzles) removes it.
    assert strip_puzzle(generated) == "def f(x: int):\n    y = x + 1\n\n    return y == 3\n"
    assert strip_puzzle(strip_puzzle(generated)) == "def f(x: int):\n    y = x + 1\n\n    return y == 3"


def test_strip_puzzle_strips_surrounding_blank_text_and_keeps_a_lone_function():
    assert strip_puzzle("\n\n  def f(x: int):\n    return x > 2\n\n\n") == "def f(x: int):\n    return x > 2"


def test_strip_puzzle_cuts_at_a_top_level_comment_too():
    assert strip_puzzle("def f(x: int):\n    return x > 2\n# more") == "def f(x: int):\n    return x > 2"


def test_solution_body_keeps_the_indented_lines_and_drops_what_follows():
    completion = "\n    a = 3\n    return [a, a]\n\nassert f(g())\n\ndef f2(x):\n"
    assert solution_body(completion) == "\n    a = 3\n    return [a, a]\n"


def test_solution_body_of_a_completion_that_does_not_parse_is_none():
    assert solution_body("\n    return [1, 2\n\nassert f(g())") is None


def test_solution_body_on_the_header_line():
    assert solution_body(" return 7\nprint(1)") == " return 7"


@pytest.mark.parametrize("f, inputs", [
    ("def f(x: int):\n    return x == 1", ""),
    ("def f(x: int, a=5, b=[1, 2]):\n    return x == a", "a=5, b=[1, 2]"),
    ("def f(li: List[List[int]], n=3) -> bool:\n    return len(li) == n", "n=3"),
    ("def f(s: str, t='a,b'):  # trailing comment\n    return s == t", "t='a,b'"),
    ("def f(s: str, t='#'):\n    return s == t", "t='#'"),
])
def test_puzzle_inputs_are_the_parameters_after_the_answer_as_written(f, inputs):
    assert puzzle_inputs(f) == inputs


@pytest.mark.parametrize("f", [
    "def f(x: int,\n      a=5):\n    return x == a",  # header over two lines
    "def f(x: int)->bool:\n    return x == 1",  # '->bool' without the spaces the reference strips
    "x = 1",
])
def test_puzzle_inputs_of_a_weird_first_line_raise(f):
    with pytest.raises(WeirdSignature):
        puzzle_inputs(f)


def test_answer_parameter_reads_name_and_annotation():
    answer = answer_parameter("def f(nums: List[List[int]], k=2):\n    return len(nums) == k")
    assert (answer.name, answer.annotation_text) == ("nums", "List[List[int]]")
    assert answer_parameter("def f():\n    return True") is None
    assert answer_parameter("def f(x, y=1):\n    return x").annotation is None


def test_remove_docstring_removes_only_the_docstring_lines():
    f = 'def f(x: int):\n    """Find x.\n\n    More."""\n    return x == 3'
    assert remove_docstring(f) == "def f(x: int):\n    return x == 3"


def test_remove_docstring_leaves_text_without_one_or_where_it_is_the_whole_body():
    plain = "def f(x: int):\n    return x == 3"
    assert remove_docstring(plain) == plain
    only_doc = 'def f(x: int):\n    """doc"""'
    assert remove_docstring(only_doc) == only_doc
