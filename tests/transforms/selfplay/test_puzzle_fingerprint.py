"""The fingerprint of a puzzle up to formatting and renaming (``transforms.selfplay.puzzle_fingerprint``): pure,
on texts written here."""
from __future__ import annotations

import pickle

import pytest

from transforms.selfplay.puzzle_fingerprint import canonical_form, fingerprint, fingerprint_index

PUZZLE = '''def f(li: List[int], target=17, n=4):
    total = 0
    for x in li:
        total += x
    assert all(y > 0 for y in li), "positive"
    return len(li) == n and total == target
'''

SAME = [
    # whitespace, comments, blank lines, quotes, a docstring, another function name, a return annotation
    '''def   my_puzzle( li :List[int] , target = 17,n=4 ) -> bool :
    """Find a list of n positive numbers that sum to target."""

    total=0   # running sum
    for x in li :
        # add it up
        total+=x
    assert all( y>0 for y in li ), 'positive'
    return len( li )==n and total==target''',
    # every parameter and local renamed
    '''def f(nums: List[int], goal=17, count=4):
    s = 0
    for item in nums:
        s += item
    assert all(z > 0 for z in nums), "positive"
    return len(nums) == count and s == goal''',
    # the function renamed, and a bare string statement mid-body (a no-op)
    '''def sat(li: List[int], target=17, n=4):
    total = 0
    "sum the list"
    for x in li:
        total += x
    assert all(y > 0 for y in li), u"positive"
    return len(li) == n and total == target''',
]

DIFFERENT = [
    PUZZLE.replace("target=17", "target=18"),  # another instance: another puzzle
    PUZZLE.replace("total == target", "total != target"),
    PUZZLE.replace('"positive"', '"negative"'),  # a string value is part of the puzzle
    PUZZLE.replace("List[int]", "List[float]"),
    PUZZLE.replace("len(li)", "max(li)"),  # a global (builtin) name is not renamed
    # two locals swapped where they are used: not a renaming
    PUZZLE.replace("total += x", "x += total"),
]


def test_formatting_docstrings_and_renames_do_not_change_the_fingerprint():
    assert fingerprint(PUZZLE) is not None
    assert [fingerprint(s) for s in SAME] == [fingerprint(PUZZLE)] * len(SAME)


@pytest.mark.parametrize("variant", DIFFERENT)
def test_a_different_puzzle_has_a_different_fingerprint(variant):
    assert variant != PUZZLE and fingerprint(PUZZLE) is not None and fingerprint(variant) is not None
    assert fingerprint(variant) != fingerprint(PUZZLE)


def test_recursion_nested_functions_lambdas_and_walrus_are_renamed_consistently():
    a = '''def f(s: str, k=3):
    def helper(t):
        return t[::-1]
    key = lambda c: ord(c)
    if (m := len(s)) > k:
        return helper(s) == s and f(s[1:-1])
    return sorted(s, key=key) == list(s) and m > 0
'''
    b = '''def puzzle(word: str, size=3):
    def rev(u):
        return u[::-1]
    order = lambda ch: ord(ch)
    if (length := len(word)) > size:
        return rev(word) == word and puzzle(word[1:-1])
    return sorted(word, key=order) == list(word) and length > 0
'''
    assert fingerprint(a) == fingerprint(b) is not None
    # the keyword name of a call is the callee's, not a local: it stays
    assert fingerprint(a) != fingerprint(a.replace("key=key", "reverse=key"))


def test_no_fingerprint_without_a_parsable_function():
    assert fingerprint("def f(x: int:\n    return x") is None
    assert fingerprint("x = 1") is None
    assert canonical_form("") is None
    assert fingerprint("def f(x: int):\n    return x == " + "9" * 5000) is None  # over the int digit limit


def test_the_index_keeps_the_first_name_and_pickles_small():
    index = fingerprint_index([("A:0", PUZZLE), ("A:1", SAME[1]), ("B:0", DIFFERENT[0]), ("C:0", "def f(:")])
    assert index == {fingerprint(PUZZLE): "A:0", fingerprint(DIFFERENT[0]): "B:0"}
    assert pickle.loads(pickle.dumps(index)) == index
