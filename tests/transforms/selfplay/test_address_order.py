"""Self-play refuses code that may put objects hashed by their address in a set (instances of a class it defines,
functions, lambdas, classes, builtin types and functions, ``None``): the set's order follows ASLR, so a pair such
as ``list({A(), A()})[0]`` verified in the sandbox while plain Python's ``f(g())`` was False in 2 of 10 runs."""
from __future__ import annotations

import pytest

from transforms.execute.isolation import IsolationLimits
from transforms.selfplay import filters
from transforms.selfplay.address_order import REASON, address_hash_route
from transforms.selfplay.beam import SandboxSettings, filter_sample, solution_refusal, verify_attempts
from transforms.selfplay.preset import load_preset

STRINGS = load_preset().filters
SANDBOX = SandboxSettings(IsolationLimits(timeout_s=3, cpu_s=2), workers=1)

# The red team's pair: the first element of a set of two instances of a local class.
CLASS_PUZZLE = ("def f(i: int):\n    class A:\n        pass\n    a, b = A(), A()\n    a.v, b.v = 0, 1\n"
                "    return list({a, b})[0].v == i\n")
PLAIN_PUZZLE = "def f(i: int):\n    return i == 1000\n"


def _f(body: str) -> str:
    return "def f(x: int):\n" + body


@pytest.mark.parametrize("code, route", [
    (CLASS_PUZZLE, "class A, whose instances hash by address (line 2)"),
    (_f("    class B(int):\n        pass\n    return x == 1\n"), "class B"),  # the class object itself
    ("def g():\n    class A:\n        pass\n    return [A() for _ in range(3)]\n", "class A"),
    (_f("    def a():\n        return 0\n    def b():\n        return 1\n    return list({a, b})[0]() == x\n"),
     "a read as a value beside a set"),
    (_f("    fs = [lambda: 0, lambda: 1]\n    return next(iter(set(fs)))() == x\n"), "a lambda beside a set"),
    (_f("    return [t(1) for t in {int, str, float}][0] == x\n"), "read as a value beside a set"),
    (_f("    return next(iter(frozenset([len, abs])))([x]) == 1\n"), "read as a value beside a set"),
    (_f("    return x == [v for v in {None, 1}][0]\n"), "None in a set"),
    (_f("    return x == list(set([..., 1]))[0]\n"), "Ellipsis in a set"),
    (_f("    s = {v for v in (max, min)}\n    return list(s)[0]([x, 2]) == 2\n"), "read as a value"),
    (_f("    s = {1}\n    try:\n        pass\n    except ValueError as e:\n        s.add(ValueError)\n"
        "    return len(s) == x\n"), "ValueError read as a value"),
    (_f("    s = set()\n    s.add(lambda: 1)\n    return len(s) == x\n"), "a lambda beside a set"),
    # iterators, generators and methods that reach a set through a variable (the red team's open routes)
    (_f("    gs = [(v for v in 'ab'), (v for v in 'cd')]\n    return next(list(set(gs))[0]) == 'a'\n"),
     "a generator kept beside a set (line 2)"),
    (_f("    a, b = iter([1]), iter([2])\n    return next(list({a, b})[0]) == x\n"), "iter(...) kept beside a set"),
    (_f("    pairs = zip([x], [1])\n    return {pairs, 1} != {2}\n"), "zip(...) kept beside a set"),
    (_f("    a, b = object(), object()\n    return (list({a, b})[0] is a) == (x == 1)\n"),
     "object(...) kept beside a set"),
    (_f("    def gen():\n        yield x\n    s = {gen(), gen()}\n    return next(list(s)[0]) == 1\n"),
     "gen(...) kept beside a set (line 4)"),
    (_f("    xs, ys = [], []\n    s = {xs.append, ys.append}\n    list(s)[0](1)\n    return len(xs) == x\n"),
     ".append read as a value beside a set (line 3)"),
    ("import math\n" + _f("    return list({math.sqrt, math.exp})[0](0.0) == x\n"), ".sqrt read as a value"),
    (_f("    s = 'ab'\n    return list({s.lower, s.upper})[0]() == x\n"), ".lower read as a value"),
    # calls whose results hash by address: matches, hash objects, generators of random numbers, exceptions, types
    ("import re\n" + _f("    s = {re.match('a', 'a'), re.match('b', 'b')}\n    return list(s)[0].end() == x\n"),
     ".match(...) kept beside a set (line 3)"),
    ("import re\n" + _f("    p = re.compile('a')\n    s = {p.search('a'), p.search('ba')}\n"
                          "    return list(s)[0].end() == x\n"), ".search(...) kept beside a set (line 4)"),
    ("import random\n" + _f("    s = {random.Random(1), random.Random(2)}\n    return list(s)[0].random() > x\n"),
     ".Random(...) kept beside a set"),
    ("import hashlib\n" + _f("    s = {hashlib.sha256(b'a'), hashlib.md5(b'a')}\n"
                               "    return list(s)[0].name == 'md5'\n"), ".sha256(...) kept beside a set"),
    (_f("    s = {ValueError(1), ValueError(2)}\n    return list(s)[0].args[0] == x\n"),
     "ValueError(...) kept beside a set"),
    (_f("    s = {type(1), type('a')}\n    return list(s)[0] == int\n"), "type(...) kept beside a set"),
    (_f("    it = iter([1])\n    s = {it}\n    return len(s) == x\n"), "iter(...) kept beside a set (line 2)"),
    ("import re\n" + _f("    s = {m for m in re.finditer('a', 'aa')}\n    return list(s)[0].start() == x\n"),
     "what .finditer(...) yields kept beside a set"),
    ("import re\n" + _f("    s = set(zip(re.finditer('a', 'aa'), [1, 2]))\n    return list(s)[0][1] == x\n"),
     "what .finditer(...) yields kept beside a set"),
    ("import re\n" + _f("    s = set(map(re.compile('a').match, ['a', 'ab']))\n    return list(s)[0].end() == x\n"),
     "map over a function whose results hash by address"),
    # the second red team's routes (2026-12-05): names, caught exceptions, decorators, copies, new classes
    (_f("    return list({Ellipsis, NotImplemented})[0] is Ellipsis\n"), "Ellipsis read as a value beside a set"),
    ("import re, math\n" + _f("    return list({re, math})[0] is re\n"), "module re read as a value beside a set"),
    ("import typing\n" + _f("    return list({typing.T, typing.KT})[0] is typing.T\n"), ".T read as a value"),
    (_f("    s = {1}\n    try:\n        raise ValueError(x)\n    except ValueError as e:\n        s.add(e)\n"
        "    return len(s) == 2\n"), "the exception caught as e kept beside a set (line 5)"),
    ("box = []\ndef keep(fn):\n    box.append(fn)\n    return fn\n@keep\ndef a(x):\n    return 1\n"
     "def g():\n    return list(set(box))[0]\n", "a decorator beside a set (line 6)"),
    ("import hashlib\n" + _f("    s = {hashlib.md5(b'a').copy(), hashlib.md5(b'b').copy()}\n    return len(s) == x\n"),
     ".md5(...) kept beside a set"),
    (_f("    s = {ValueError(1).with_traceback(None)}\n    return len(s) == x\n"), "ValueError(...) kept beside"),
    ("import typing\n" + _f("    s = {typing.NamedTuple('P', [('v', int)]), int}\n    return len(s) == x\n"),
     "NamedTuple(...) beside a set (line 3): it makes a class"),
    # no set or text the rule sees: still checked (both can be made in ways no list of makers follows)
    (_f("    fs = [lambda: 0, lambda: 1]\n    return fs[x]() == 1\n"), "a lambda where its address may show (line 2)"),
    ("import hashlib\ndef h(v):\n    return v\n"
     + _f("    return len(hashlib.algorithms_guaranteed.union([h])) == x\n"), "h read as a value beside a set"),
    ("import typing\n" + _f("    return len({typing.overload(0), 1}) == x\n"), ".overload(...) kept beside a set"),
    (_f("    return len({property().getter(None), 1}) == x\n"), "property(...) kept beside a set"),
    (_f("    return str(memoryview(b'ab').cast('B')) != str(x)\n"), "kept beside text made from values"),
    ("def h(v):\n    return v\ndef f(s: Set[int]):\n    return len(s.union([h])) == 3\n",
     "h read as a value beside a set"),
    # text made from values: the default repr shows the address (no set needed)
    (_f("    return str(x) != str(lambda: 0)\n"), "a lambda beside text made from values (line 2)"),
    ("def g():\n    def h():\n        pass\n    return repr(h)\n", "h read as a value beside text made from values"),
    (_f("    return f'{iter([x])}' != ''\n"), "iter(...) kept beside text made from values"),
    (_f("    xs = []\n    return '%s' % xs.append != str(x)\n"), ".append read as a value beside text"),
    (_f("    fmt = '{}'\n    return fmt.format(zip([x])) != ''\n"), "zip(...) kept beside text made from values"),
    # a third red team's routes (2026-12-05): error messages, other text makers, from-imports, dict views,
    # key= that keeps, rebound builtins, memoryview, the attributes of a made class
    ("def f(x: int):\n    try:\n        [].index(f)\n    except ValueError as e:\n        return e.args[0][-5] == 'a'"
     "\n",
     "f read as a value beside text made from values (line 3)"),
    ("import typing\n" + _f("    return typing.Text(f) != ''\n"), "f read as a value beside text made from values"),
    ("from random import Random\n" + _f("    s = set([Random(1), Random(2)])\n    return len(s) == x\n"),
     "Random(...) kept beside a set"),
    ("from string import capwords\n" + _f("    return str(capwords) != str(x)\n"), "capwords read as a value"),
    ("def a():\n    pass\ndef b():\n    pass\ndef g():\n    return list({}.keys() | {a, b})\n",
     "a read as a value beside a set"),
    (_f("    return str(dict(key=lambda v: v)) != str(x)\n"), "a lambda beside text made from values"),
    ("def filter(a, b):\n    return str(a)\n" + _f("    return filter(f, []) != str(x)\n"),
     "filter rebound beside text made from values"),
    (_f("    return str(memoryview(b'a')) != str(x)\n"), "memoryview(...) kept beside text made from values"),
    ("import collections\n" + _f("    s = {collections.namedtuple('P', 'ab').ab}\n    return len(s) == x\n"),
     "namedtuple(...) beside a set (line 3): it makes a class"),
    ("from collections import namedtuple as nt\n" + _f("    return len({nt('P', 'ab').ab, 1}) == x\n"),
     "nt(...) beside a set (line 3): it makes a class"),
    # a sixth red team's routes (2026-12-05): builtins that hand back an argument, AttributeError.obj, the methods
    # of generators and memoryviews
    (_f("    return len({next(iter(''), iter('a')), 1}) == x\n"), "iter(...) kept beside a set (line 2)"),
    (_f("    return str(sum([], iter('a'))) != str(x)\n"), "iter(...) kept beside text made from values"),
    (_f("    return len({min(iter('a'), iter('b'), key=len), 1}) == x\n"), "iter(...) kept beside a set"),
    (_f("    s = {1}\n    try:\n        iter('a').foo\n    except AttributeError as e:\n        s.add(e.obj)\n"
        "    return len(s) == x\n"), "the exception caught as e kept beside a set (line 5)"),
    (_f("    return len({memoryview(b'ab').tolist, 1}) == x\n"), ".tolist read as a value beside a set"),
    (_f("    return len({(v for v in 'a').send, 1}) == x\n"), ".send read as a value beside a set"),
    # a fourth red team's routes (2026-12-05)
    ("import typing\n" + _f("    d = {f: 0}\n    return list(typing.KeysView(d) | [])[0] == f\n"),
     "f read as a value beside a set"),
    (_f("    s = {1}\n    def h(v: s.add(f)):\n        pass\n    return len(s) == x\n"),
     "an annotation that computes beside a set (line 3)"),
    (_f("    d = {1: 2}\n    s = {d.values(), 1}\n    return len(s) == x\n"), ".values(...) kept beside a set"),
    ("async def h():\n    pass\n" + _f("    return str(h()) != str(x)\n"), "async code, whose objects hash by address"),
    # the seventh red team (2026-12-05): async generators' methods, except*, names read in annotations, builtin
    # makers passed around in text mode, ... as a value
    ("async def ticks():\n    yield 1\n" + _f("    s = set(range(0, 4000, 16))\n    s.add(ticks().asend(None))\n"
                                                "    return list(s)[0] == x\n"), "async code"),
    (_f("    s = set(range(0, 4000, 16))\n    try:\n        raise ExceptionGroup('g', [ValueError(x)])\n"
        "    except* ValueError as eg:\n        s.add(eg.exceptions[0])\n    return list(s)[0] == x\n"),
     "except*, whose exception groups hold the exceptions raised"),
    ("def h(v):\n    return v\ns = set(range(0, 4000, 16))\nd = {}\ntry:\n    y: d[h] = 0\nexcept KeyError as e:\n"
     "    s.add(e.args[0])\n" + _f("    return list(s)[0] == x\n"),
     "an annotation that reads d, a name the code binds"),
    (_f("    box = iter([x])\n    y: box = 0\n    return str(y) == '0'\n"), "an annotation that reads box"),
    (_f("    walk = {'w': iter}['w']('abc')\n    return str(walk)[1] == str(x)\n"),
     "iter read as a value beside text made from values"),
    ("def walk(xs, step=reversed):\n    return step(xs)\n" + _f("    return '%s' % (walk([x]),) != ''\n"),
     "reversed read as a value beside text made from values"),
    (_f("    s = set(range(0, 4000, 16))\n    s.add(...)\n    return list(s)[0] == x\n"),
     "... read as a value beside a set"),
    # what the allowances above do not cover: a starred target keeps a list of the objects, a module's function
    # under a name the code rebinds, a subscript's target
    (_f("    a, *rest = map(iter, ['ab', 'cd'])\n    return str(rest) != ''\n"), "map over a function"),
    (_f("    a, *rest = (iter(v) for v in ['ab', 'cd'])\n    return str(rest) != ''\n"), "iter(...) kept"),
    # the eighth red team's: re.Scanner hands itself to its callbacks; a misused hint's error shows a function
    ("import re\n" + _f("    return str(re.Scanner([(r'\\w', slice)]).scan('ab')[0]) != str(x)\n"), "re.Scanner"),
    ("from re import Scanner\n" + _f("    return str(Scanner([]).scan('')) != str(x)\n"), "re.Scanner"),
    ("import typing\n" + _f("    try:\n        def h(v: typing.Optional[typing.cast, int]):\n            pass\n"
                            "    except TypeError as e:\n        return str(e)[-3] == str(x)\n"),
     "an annotation that names a function"),
    # the ninth red team's: finditer by a bare name, typing's type variables, a class's attribute in an annotation,
    # and what the new allowances below must not let through
    ("from re import finditer\n" + _f("    s = set(range(0, 4000, 16))\n    for m in finditer('a', 'a'):\n"
                                      "        s.add(m)\n    return list(s)[0] == x\n"), "from re import finditer"),
    ("import typing\n" + _f("    s = set(range(0, 4000, 16))\n    a, = typing.TypeVarTuple('Ts')\n    s.add(a)\n"
                            "    return list(s)[0] == x\n"), "typing.TypeVarTuple"),
    ("import typing\n" + _f("    try:\n        def h(v: typing.Optional[typing.IO.read, int]):\n            pass\n"
                            "    except TypeError as e:\n        return str(e)[-3] == str(x)\n"),
     "an annotation that reads .read of what is not a module"),
    ("import re\n" + _f("    seen = set()\n"
                        "    return re.sub('a', lambda m: (seen.add(m), 'x')[1], 'a') == 'x' == str(x)\n"),
     "a lambda beside a set"),
    ("import collections\n" + _f("    d = collections.defaultdict(int)\n    return len({d.default_factory, x}) == 2\n"),
     ".default_factory read"),
    # the tenth red team's: a replacement lambda with *a or m, / hides the match; a factory that makes or shows an
    # address (a function, zip, an exception)
    ("import re\n" + _f("    s = set(range(0, 4000, 16))\n    re.sub('a', lambda *a: s.add(a[0]) or '', 'a')\n"
                        "    return list(s)[0] == x\n"), "a lambda beside a set"),
    ("import re\n" + _f("    s = set(range(0, 4000, 16))\n    re.sub('a', lambda m, /: s.add(m) or '', 'a')\n"
                        "    return list(s)[0] == x\n"), "a lambda beside a set"),
    ("import collections\n" + _f("    d = collections.defaultdict(zip)\n    s = {d[0], 1}\n    return len(s) == x\n"),
     "zip read as a value beside a set"),
    ("import collections\ndef h():\n    return 0\n" + _f("    return str(collections.defaultdict(h))[-3] == str(x)\n"),
     "h read as a value"),
    ("import re as math\n" + _f("    def prod(v):\n        return v\n    return str(math.prod(iter([x]))) != ''\n"),
     "iter(...) kept"),
    ("import math\n" + _f("    math = {'prod': list}\n    return str(math.prod(iter([x]))) != ''\n"),
     "iter(...) kept"),
    (_f("    return str(memoryview(b'abc')[0:2]) != str(x)\n"), "memoryview(...) kept"),  # a slice is another one
    (_f("    i = slice(0, 2)\n    return str(memoryview(b'abc')[i]) != str(x)\n"), "memoryview(...) kept"),
    (_f("    return len({(lambda: (yield 1))(), 1}) == x\n"), "a lambda that makes a generator beside a set"),
    ("def f(x: int):\n    t = '%r'\n    t %= f\n    return t != '1'\n",
     "f read as a value beside text made from values"),
    # what the allowances after the tenth red team's false positives must not let through: a lambda's name read as
    # a value, an operand of `and`/`or`/`if else` that is the kept value, defaultdict by a name bound otherwise too,
    # the chunking idiom's list kept or handed to another builtin
    (_f("    score = lambda w: len(w)\n    return str(score) != str(x)\n"), "a lambda beside text"),
    (_f("    score = lambda w: score\n    return str(score(0)) != str(x)\n"), "a lambda beside text"),
    (_f("    score = lambda w: len(w)\n    fs = [score]\n    return str(fs[0](str(x))) != ''\n"), "a lambda"),
    ("import re\n" + _f("    m = re.match('a', 'a')\n    k = m and m\n    return str(k) != str(x)\n"),
     ".match(...) kept"),
    ("import re\n" + _f("    return str(re.match('a', 'a') or 0) != str(x)\n"), ".match(...) kept"),
    (_f("    s = set(range(0, 4000, 16))\n    s.add(iter([x]) if x else 0)\n    return list(s)[0] == x\n"),
     "iter(...) kept"),
    ("from collections import defaultdict\n" + _f("    def defaultdict(v):\n        return v\n"
                                                   "    s = {defaultdict(list), x}\n    return len(s) == 2\n"),
     "list read as a value"),
    ("from collections import OrderedDict as defaultdict\n" + _f("    d = defaultdict(list)\n    s = {x}\n"
                                                                  "    return len(s) == 1\n"),
     "list read as a value"),
    (_f("    chunks = [iter('abcd')] * 2\n    return str(chunks) != str(x)\n"), "iter(...) kept"),
    (_f("    return str(next(*[iter('')] * 2)) != str(x)\n"), "iter(...) kept"),
    # a builtin's name the code binds, where the rule would trust the builtin: called, handed a role, or a set name;
    # in the binding scope, a nested one, or anywhere once the module, global, := or a star import binds it
    (_f("    def sum(v):\n        return v\n    s = set(range(0, 4000, 16))\n    s.add(sum(iter([x])))\n"
        "    return list(s)[0] == x\n"), "sum rebound beside a set: the rule trusts the builtin (line 5)"),
    ("str = repr\n" + _f("    return str(f) != str(x)\n"), "str rebound beside text"),
    ("def f(x: int, str=repr):\n    def h():\n        return str(h)\n    return h() != ''\n", "str rebound"),
    (_f("    global sum\n    sum = x\n    return str(sum([x])) != ''\n"), "sum rebound"),
    (_f("    ys = [(sum := v) for v in [x]]\n    return str(sum(ys)) != ''\n"), "sum rebound"),
    ("def h(xs, str):\n    return sorted(xs, key=str)\n" + _f("    return str(h([x], len)) != ''\n"),
     "str rebound beside text made from values: the rule trusts the builtin (line 2)"),
    ("import collections\n" + _f("    list = tuple\n    d = collections.defaultdict(list)\n    return len({x}) == 1\n"),
     "list rebound"),
    ("def h(ValueError):\n    raise ValueError\n" + _f("    return str(x) != ''\n"), "ValueError rebound"),
    ("from collections import *\n" + _f("    return str(x) != ''\n"), "str rebound"),
    # the eleventh red team's: the judge's List (the code reads it without binding it), a module's set under another
    # name, set and frozenset themselves, a module-level read before the module binds the name (the builtin then)
    (_f("    s = set(range(0, 4000, 16))\n    s.add(List)\n    return list(s)[0] == x\n"), "List read as a value"),
    (_f("    s = set(range(0, 4000, 16))\n    s.add(List['a'])\n    return list(s)[0] == x\n"), "List read as a value"),
    ("from hashlib import algorithms_guaranteed as ag\n" + _f("    s = ag.union([x], [len])\n    return len(s) > x\n"),
     "len read as a value beside a set"),
    (_f("    s = set(range(0, 4000, 16))\n    s.add(frozenset)\n    return list(s)[0] == x\n"),
     "frozenset read as a value"),
    ("s = set(range(0, 4000, 16))\ns.add(range)\nr = list(s)[0]\nrange = None\n", "range read as a value"),
    # a type read for its method counts only for a builtin type the code does not rebind: typing's aliases' methods
    # make aliases hashed by the address of what they name
    (_f("    s = {x}\n    s.add(List.copy_with((0,)))\n    return len(s) == 2\n"), "List read as a value"),
    ("from typing import List as str\n" + _f("    s = {x}\n    s.add(str.copy_with((0,)))\n    return len(s) == 2\n"),
     "str read as a value"),
    # the twelfth red team's: a name two imports bind (the one that runs is not the last one written), an exception's
    # .obj through `or`, an augmented assignment that reads an iterator into text
    ("from collections import ChainMap as dd\nif 0:\n    from collections import defaultdict as dd\n"
     + _f("    s = set(range(0, 4000, 16))\n    s.add(dd(list).maps[0])\n    return list(s)[0] == x\n"),
     "list read as a value beside a set"),
    ("import re\nfrom collections import ChainMap as Counter\nif 0:\n    from collections import Counter\n"
     + _f("    s = set(range(0, 4000, 16))\n    s.add(Counter(re.match('a', 'a')).maps[0])\n"
          "    return list(s)[0] == x\n"), ".match(...) kept beside a set"),
    (_f("    s = set(range(0, 4000, 16))\n    try:\n        iter(()).nope\n    except AttributeError as e:\n"
        "        s.add((e or 0).obj)\n    return list(s)[0] == x\n"), "the exception caught as e kept"),
    ("import collections\n" + _f("    it = iter(())\n    it += collections.UserString('')\n"
                                 "    return it.data[-3:] != str(x)\n"), "iter(...) kept"),
    # the thirteenth red team's: a call through a subscript (enumerate[0] is a generic alias) makes what no call
    # by name shows
    (_f("    s = set(range(0, 4000, 16))\n    s.add(enumerate[0]('a'))\n    return list(s)[0] == x\n"),
     "enumerate read as a value beside a set"),
    ("import typing\n" + _f("    return str(typing.ValuesView[0]({})) != str(x)\n"), "ValuesView"),
    # enumerate over finditer counts only with its match bound to a plain name only read
    ("import re\n" + _f("    s = set(range(0, 4000, 16))\n    for i, m in enumerate(re.finditer('a', 'a')):\n"
                        "        s.add(m)\n    return list(s)[0] == x\n"), "what .finditer(...) yields kept"),
    ("import re\n" + _f("    s = set(range(0, 4000, 16))\n    for p in enumerate(re.finditer('a', 'a')):\n"
                        "        s.add(p[1])\n    return list(s)[0] == x\n"), "what .finditer(...) yields kept"),
    ("import re\n" + _f("    s = set(range(0, 4000, 16))\n    for m, i in enumerate(re.finditer('a', 'a')):\n"
                        "        s.add(i)\n    return list(s)[0] == x\n"), "what .finditer(...) yields kept"),
])
def test_code_that_may_put_objects_hashed_by_address_in_a_set_is_refused(code, route):
    assert route in (address_hash_route(code) or ""), address_hash_route(code)


@pytest.mark.parametrize("code", [
    "def f(xs: List[int]):\n    return len(set(xs)) == len(xs) == 5\n",
    "def f(s: str):\n    return sorted(set(s)) == ['a', 'b', 'c']\n",
    "def f(xs: List[int]):\n    return sorted(set(map(int, xs))) == [1, 2]\n",
    "def f(xs: List[str]):\n    return {x.lower() for x in xs} == {'a'} and all(isinstance(x, (str, int))"
    " for x in xs)\n",
    "def f(xs: List[str]):\n    return len(set(sorted(xs, key=len))) == 3 and type(xs[0]) == str\n",
    "def f(xs: List[int]):\n    return len({x for x in filter(lambda v: v > 2, xs)}) == 3\n",
    # no set or text: a function called where it stands, a builtin passed around
    "def f(x: int):\n    fs = [len, abs]\n    return fs[x]([-1]) == 1\n",
    "def f(x: int):\n    def h(v):\n        return v + 1\n    return list(map(h, [x]))[0] == 7 and {x} != {h(x)}\n",
    "def f(x: int, n: int = 3):\n    y: int = x\n    return y in {1, 2, n}\n",
    "def f(x: int):\n    try:\n        return len({1 // x}) == 1\n    except (ZeroDivisionError, ValueError):\n"
    "        raise ValueError\n",
    # iterators used up where they stand, methods called or used as a key: only values reach the set
    "def f(xs: List[int]):\n    return len(set(zip(xs, xs[1:]))) == 3 and {*map(abs, xs)} == {1}\n",
    "def f(xs: List[int]):\n    s = set()\n    for i, v in enumerate(reversed(xs)):\n        s.add(v * i)\n"
    "    return len(s) == 3 and sum(v for v in s) == 5 and next(iter(s)) >= 0\n",
    "def f(s: str):\n    return ''.join(sorted(set(c.lower() for c in s))) == 'ab' and s.count('a') == 1\n",
    "import math\ndef f(x: float):\n    return x in {math.pi, math.e} and math.sqrt(x) > 1\n",
    "def f(xs: List[int]):\n    def gen():\n        yield from xs\n    return set(gen()) == {1, 2}\n",
    # an address-hashed object held by a name that is only ever read, tested or iterated where it stands
    "import random\ndef f(x: int):\n    r = random.Random(1)\n    return len({r.randint(0, 9) for _ in 'abc'}) == x\n",
    "import re\ndef f(s: str):\n    m = re.match('a+', s)\n    return m is not None and len({m.group()}) == 1\n",
    "def f(xs: List[int]):\n    it = iter(xs)\n    first = next(it)\n    return len({first} | set(it)) == 2\n",
    "import re\ndef f(s: str):\n    return {m.group() for m in re.finditer('a+', s)} == {'aa'}\n",
    "def f(x: int):\n    if x < 0:\n        raise ValueError(x)\n    return type(x) == int and x in {1, 2}\n",
    "import re\ndef f(s: str):\n    try:\n        return len({re.sub('a', '', s)}) == 1\n    except ValueError as e:\n"
    "        return str(e) in {'x'} or isinstance(e, TypeError)\n",
    "import hashlib\ndef f(s: str):\n    return hashlib.sha256(s.encode()).hexdigest()[:2] in {'ab', 'cd'}\n",
    # text of values and of builtins (no address in their reprs)
    "def f(x: int):\n    return str(x) + repr(len) + f'{int}' + '%d' % (x % 7) == '3'\n",
    "def f(d: Dict[str, int]):\n    return sorted(d.items(), key=str) == [('a', 1)] and max(d.values()) in {1}\n",
    "from math import sqrt, pi\ndef f(x: float):\n    return str(sqrt(x)) != str(pi) and x in {1.0}\n",
    "def f(xs: List[int]):\n    return next(iter(xs), 0) + sum(xs, 1) + min(iter(xs)) in {1, 2}\n",
    # ordinary code the seventh red team found refused: unpacked, multiplied, tested with bool, counted, indexed
    "def f(s: str) -> bool:\n    a, b = map(int, s.split())\n    return a * b == 42 and str(a) != ''\n",
    "import math\ndef f(n: int) -> bool:\n    return n > 10 and math.prod(map(int, str(n))) == 24 and f'{n}' != ''\n",
    "import re\ndef f(s: str) -> bool:\n    return bool(re.fullmatch(r'[a-z]+\\d{3}', s)) and str(len(s)) == '8'\n",
    "import collections\ndef f(s: str) -> bool:\n    c = collections.Counter(ch for ch in s if ch.isalpha())\n"
    "    return str(len(s)) == '6' and c.most_common(1)[0][1] == 3\n",
    "import re\ndef f(s: str) -> bool:\n    return re.search(r'\\d+', s)[0] == '2024' and len({s}) == 1\n",
    "def f(x: int) -> bool:\n    return str(memoryview(b'abc')[-1]) == str(x)\n",
    "def f(s: str) -> bool:\n    first, *rest = map(int, s.split())\n    return str(first) == '1' and rest == [2]\n",
    "from collections import Counter\ndef f(s: str) -> bool:\n    return str(Counter(map(int, s))[1]) == '2'\n",
    "import re\ndef f(s: str) -> bool:\n    return re.sub(r'\\d', lambda m: str(9 - int(m.group())), s) == 'a8b7'\n",
    "import re\ndef f(s: str) -> bool:\n    return re.compile('a').sub(lambda m: m[0] * 2, s) == 'aa' and len({s})\n",
    "import collections\ndef f(s: str) -> bool:\n    d = collections.defaultdict(int)\n    for c in s:\n"
    "        d[c] += 1\n    return len(set(d.values())) == 1\n",
    # a body's placeholder and a comparison with ... store nothing; typing's names read in annotations are hints
    "def f(x: int):\n    def h():\n        ...\n    return x is not ... and len({x}) == 1 and h() is None\n",
    "import typing\nfrom typing import Tuple as T\ndef f(x: typing.List[int], y: T[int, ...] = (1,)):\n"
    "    return len(set(x)) == 2\n",
    "def f(d: Dict[int, List[int]], n: Optional[int] = None) -> bool:\n    s: Set[int] = set(d)\n"
    "    return sum(d.values()) == 3 and max(d.values()) in s and all(v for v in d.values())\n",
    # the tenth red team's false positives: defaultdict by its from-imported name, the chunking idiom, a lambda
    # called through its name, a match tested inside `and`
    "from collections import defaultdict\ndef f(edges: List[List[int]]) -> bool:\n    g = defaultdict(list)\n"
    "    for a, b in edges:\n        g[a].append(b)\n    seen = set()\n    stack = [0]\n    while stack:\n"
    "        v = stack.pop()\n        if v not in seen:\n            seen.add(v)\n            stack.extend(g[v])\n"
    "    return len(seen) == 3\n",
    "def f(s: str) -> bool:\n    pairs = [''.join(p) for p in zip(*[iter(s)] * 2)]\n"
    "    return pairs == ['ab', 'cd'] and str(len(pairs)) == '2'\n",
    "def f(s: str) -> bool:\n    score = lambda w: sum(ord(c) for c in w)\n    return str(score(s)) == '294'\n",
    "def f(n: int) -> bool:\n    fact = lambda k: 1 if k < 2 else k * fact(k - 1)\n    return fact(n) in {120}\n",
    "import re\ndef f(s: str) -> bool:\n    m = re.match('a+', s)\n"
    "    return bool(m and m.group() == 'aa') and str(len(s)) == '3'\n",
    "import re\ndef f(s: str) -> bool:\n    return (re.match('b', s) or re.match('a', s))[0] in {'a'}\n",
    # builtins' names bound by the code and read as values: parameters, totals, a running maximum (46 of 459 Code
    # Alpaca Python functions were refused for these alone); the builtin called in a scope that does not bind it
    "def f(list: List[int]) -> bool:\n    total = 0\n    for i in list:\n        total += i\n"
    "    return str(total) == '6' and len(list) in {3}\n",
    "def f(arr: List[int]) -> bool:\n    sum = 0\n    for x in arr:\n        sum += x\n"
    "    return sum / len(arr) == 2.0 and {sum} == {6}\n",
    "def f(lst: List[int]) -> bool:\n    max = lst[0]\n    for v in lst:\n        if v > max:\n            max = v\n"
    "    return f'{max}' == '74'\n",
    "def avg(list):\n    return sum(list) / len(list)\ndef f(xs: List[int]) -> bool:\n"
    "    return str(avg(list(xs))) == '2.0' and set(xs) == {1, 3}\n",
    "def f(s) -> bool:\n    str = s.strip()\n    return len(str) == 3 and str[0] in {'a'}\n",
    # the eleventh red team's false positives: a builtin type read for its method, types compared in a tuple, a
    # walrus-bound match, finditer's iterator through a name only looped over, a judge's name compared or dropped
    "def f(s: str) -> bool:\n    return ''.join(dict.fromkeys(s)) == 'abc' and set(s) == {'a', 'b', 'c'}\n",
    "def f(x: List[int]) -> bool:\n    return all(type(v) in (int, float) for v in x) and len(set(x)) == 5\n",
    "def f(x: List[int]) -> bool:\n    return int.from_bytes(bytes(x), 'big') == 258 and len(set(x)) == 2\n",
    "def f(s: str) -> bool:\n    return ''.join(filter(str.isdigit, s)) == '123' and len(set(s)) == len(s)\n",
    "def f(ws: List[str]) -> bool:\n    return sorted(ws, key=str.lower) == ['a', 'B', 'c'] and len(set(ws)) == 3\n",
    "import re\ndef f(s: str) -> bool:\n    if (m := re.fullmatch(r'(\\w+)@(\\w+)', s)):\n"
    "        return m.group(1) != m.group(2) and len({s}) == 1\n    return False\n",
    "import re\ndef f(s: str) -> bool:\n    matches = re.finditer(r'\\d+', s)\n    total = 0\n    for m in matches:\n"
    "        total += int(m.group())\n    return total == 60 and str(total) in {'60'}\n",
    "def f(x: int) -> bool:\n    Dict\n    return Dict[str, int] is not None and str(x) == '1'\n",
    # the twelfth red team's false positives: a lambda's name handed to a caller or annotated, a match of two
    # alternatives held by a name, a parameter named set, the tuple form of the chunking idiom, UserString imported
    "def f(words: List[str]) -> bool:\n    score = lambda w: (len(set(w)), w)\n"
    "    return max(words, key=score) == 'abcd'\n",
    "def f(s: str) -> bool:\n    to_int = lambda c: ord(c) - 96\n"
    "    return sum(map(to_int, s)) == 6 and len(set(s)) == 3\n",
    "from typing import Callable\ndef f(s: str) -> bool:\n    norm: Callable = lambda w: w.strip().lower()\n"
    "    return len({norm(w) for w in s.split(',')}) == 2\n",
    "import re\ndef f(s: str) -> bool:\n    m = re.fullmatch(r'\\d+', s) or re.fullmatch(r'[a-z]+', s)\n"
    "    return bool(m) and len(set(s)) == 3\n",
    "import re\ndef f(s: str, strict: bool = True) -> bool:\n"
    "    m = re.fullmatch(r'\\d+', s) if strict else re.match(r'\\d+', s)\n"
    "    return m is not None and len(set(s)) == 3\n",
    "def f(xs: List[int], set=None) -> bool:\n    seen = {x % 7 for x in xs}\n"
    "    return len(seen) == 3 and set is None\n",
    "def f(s: str) -> bool:\n    pairs = [''.join(p) for p in zip(*(iter(s),) * 2)]\n    return len(set(pairs)) == 2\n",
    "from collections import UserString\ndef f(s: str) -> bool:\n    u = UserString(s)\n"
    "    return u.upper() == 'AB' and len(set(s)) == 2\n",
    # the thirteenth red team's: matches whose truth any/all read, types compared in a list
    "import re\ndef f(ws: List[str]) -> bool:\n"
    "    return any(re.fullmatch('a+', w) for w in ws) and len(set(ws)) == 2\n",
    "def f(x: List[int]) -> bool:\n    return all(type(v) in [int, float] for v in x) and len(set(x)) == 5\n",
    "import re\ndef f(s: str) -> bool:\n    starts = {}\n    for i, m in enumerate(re.finditer(r'\\d+', s)):\n"
    "        starts[i] = m.start()\n    return starts == {0: 0, 1: 2} and set(s) >= {'1'}\n",
])
def test_sets_of_values_hashed_by_value_are_allowed(code):
    assert address_hash_route(code) is None


# A name bound with def, and bound again in an inner scope otherwise: where the inner binding is all that scope
# has, the reads there are the inner values (Python makes the name local to that scope).
@pytest.mark.parametrize("code", [
    # P3's ThreePrimes:0 as renamed to f, in short: the generator's loop variable f is local to the generator
    "def f(factors: List[List[int]]):\n    primes = set(range(2, 100))\n"
    "    return all(p in primes for f in factors for p in f)\n",
    "def f(xs: List[int]):\n    return {f for f in xs} == {1}\n",
    "def f(xs: List[int]):\n    s = {0}\n    for f in xs:\n        s.add(f)\n    return len(s) == 3\n",
    "def f(xs: List[int]):\n    return len({f * 2 for f in xs} | {f for f in range(3)}) == 4\n",
    "def f(x: int):\n    def h(f):\n        return {f}\n    return h(x) == {1}\n",  # a parameter
    "def f(x: int):\n    try:\n        s = {1 // x}\n    except ZeroDivisionError as f:\n        s = {str(f)}\n"
    "    return len(s) == 1\n",
])
def test_a_def_name_rebound_only_otherwise_in_an_inner_scope_is_that_scopes_value(code):
    assert address_hash_route(code) is None


@pytest.mark.parametrize("code, line", [
    ("def f(xs):\n    return {f for f in [f]}\n", 2),  # the first iterable is read in the enclosing scope
    ("def f(xs):\n    return {f, 1}\n", 2),  # no inner binding: the function itself
    ("def g():\n    f = 1\n    def f():\n        pass\n    return {f}\n", 5),  # the same scope binds it by def too
    ("def f(xs):\n    return {f for x in xs if (f := x) or True}\n", 2),  # := binds across scopes
    ("def f():\n    pass\ndef g():\n    global f\n    f = 1\n    return {f}\n", 6),
    ("def f(x):\n    def h(f=f):\n        return {f}\n    return h()\n", 2),  # a default: the enclosing scope's f
    ("from m import f\ndef f(xs):\n    return {f for f in xs}\n", 3),  # an import binds it too
    ("from m import *\ndef f(xs):\n    return {f for f in xs}\n", 3),  # none exempt beside a star import
    ("def f(x):\n    def h(*, f=f):\n        return {f}\n    return h()\n", 2),  # a keyword-only default too
])
def test_a_def_name_read_where_it_may_be_the_function_is_still_refused(code, line):
    assert f"f read as a value beside a set (line {line})" == address_hash_route(code)


def test_p3_cost(p3_data):
    """Measured: none of the 1,715 P3 puzzles is refused. Before the rule followed scopes, ThreePrimes:0 (a test
    puzzle) was: as renamed, its generator's loop variable ``f`` shares the name of its own ``def f``."""
    puzzles = (*p3_data.train, *p3_data.test_instances)
    assert len(puzzles) > 1000 and any(p.name == "ThreePrimes:0" for p in puzzles)
    refused = {p.name for p in puzzles if address_hash_route(p.f)}
    assert refused == set()
    # Reference solutions beside their puzzle: 10, a class or a lambda; none by the iterator and method rules.
    routes = [route.split(" (line")[0] for p in puzzles for sol in p.solutions
              if (route := address_hash_route(f"{p.f}\n\n{sol}"))]
    assert sorted(set(routes)) == ["a lambda beside a set", "class InitOpts, whose instances hash by address"]
    assert len(routes) == 10


def _sample(text: str) -> dict:
    return {"preset": "paper", "head": "def f(", "text": text, "prompt_index": 0, "sample_index": 0, "k": 0,
            "examples": [], "seed": 0}


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_the_self_play_filter_refuses_an_address_ordered_puzzle_before_it_runs(rate):
    reason, detail, _ = filter_sample(_sample(CLASS_PUZZLE[len("def f("):]), STRINGS, trivial_reject_rate=rate,
                                      seed=0, sandbox=SANDBOX)
    assert reason == REASON == "hashes_by_address" and "line 2" in detail, (reason, detail)


def test_the_pure_filter_refuses_an_address_ordered_puzzle_in_its_order(run_in_process):
    outcomes = filters.filter_puzzles([CLASS_PUZZLE, PLAIN_PUZZLE], run_in_process, trivial_reject_rate=1.0)
    assert [o.reason for o in outcomes] == [REASON, None]
    assert filters.REASONS.index("finalizes_generator") < filters.REASONS.index(REASON) < filters.REASONS.index(
        "return_true_failed")


def test_self_play_refuses_a_solution_that_orders_by_address_with_its_puzzle_in_front():
    """The puzzle builds a set of what g returns; g hands it builtin functions (hashed by address, shown without
    one): refused only beside its puzzle."""
    sat = "def f(x: List[int]):\n    return len(set(x)) == 2\n"
    body = "\n    return [len, abs]\n"
    assert address_hash_route("def g():" + body) is None  # g alone makes no set
    literal = filters.trivial_preamble(STRINGS)
    [attempt] = verify_attempts({"sat": sat}, "def g():", "List[int]", [body], "", 1, STRINGS.judge_preamble,
                                SANDBOX, literal_preamble=literal)
    assert attempt["status"] == "refused", attempt
    assert attempt["reason"].startswith("the solution may put objects hashed by address in a set, or show an address "
                                        "in text"), attempt
    assert solution_refusal("def g():\n    return [1, 2]\n", sat) is None


def test_a_solution_is_looked_at_with_its_puzzle_for_interpreter_routes_too():
    """The thirteenth red team: g's `global list, tuple` rebinds what the puzzle's type comparison reads, making it
    an identity test of two patterns in re's cache (verify_pair passed it 10 of 10; a plain script failed it)."""
    sat = "def f(n: int) -> bool:\n    return type(n) != str != list is not tuple\n"
    g = ("def g():\n    global list, tuple\n    import re\n    tuple = re.compile('q')\n"
         "    list = re.compile('q')\n    return 1\n")
    assert filters.interpreter_reason(sat) is None and solution_refusal(g) is None  # each alone is fine
    assert (solution_refusal(g, sat) or "").startswith("the solution reaches the interpreter: identity comparison")
