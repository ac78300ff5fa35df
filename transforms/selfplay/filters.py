"""The reference's puzzle filters (gen.py ``good_puzzles``), in its order, each with its own reason code.

1. ``missing_def_f`` / ``missing_return``: after ``strip_puzzle`` the text must start with ``def f(`` and
   contain ``return``.
   ``p3_test_puzzle`` (project addition, ``puzzle_fingerprint.py``): the puzzle is a P3 test puzzle (any instance
   of a test family) up to formatting and renaming. The model may reproduce one from pre-training; kept, it would
   put the evaluation's own puzzle in the training data. Checked before anything runs, so every reproduction is
   counted under this reason whatever the later filters would have said; without a P3 folder there is no index.
2. ``unsafe_code``: the judge refuses code with ``builtin``, ``__class`` or ``open(`` in it, or importing a
   module outside its safe list. ``return_true_failed``: the copy with ``    return True`` inserted as the
   second line, followed by ``assert f(None)``, must run cleanly in the judge (1 s). Between the two,
   ``reaches_interpreter`` (project addition, ``introspection.py``): a model-written puzzle that touches the
   interpreter's internals could forge its own verdict, so it never runs. Then ``draws_unseeded_random`` (project
   addition, ``determinism.py``): a puzzle that may draw from ``random`` other than through ``Random(<constant>)``
   holds in some runs and not in others (``return x == random.randint(0, 1)`` passes the pair's two checks a
   quarter of the time), so its verdict is not its training text's. It is refused here, before anything runs,
   rather than after the reference's filters: the trivial test would run the draw, and its reason (and the claim
   below that every verdict is a function of the text) would then rest on chance. Then ``finalizes_generator``
   (``finalizers.py``: a generator holding a ``finally``, a ``with`` or a handler of ``GeneratorExit``, which runs
   when the garbage collector, timed by allocations that differ between the sandbox and a plain script, collects
   it) and ``hashes_by_address`` (``address_order.py``: a class, or a set or text made from values beside a
   function, lambda, iterator or method kept as a value, whose order or repr follows ASLR), for the same reason.
3. From f's signature (the reference ``exec``s the def with only ``List`` defined and reads
   ``inspect.getfullargspec``): ``answer_annotation_invalid`` when the def would not evaluate there or the
   first parameter has no annotation; ``bad_signature`` unless exactly the first parameter is required and there
   are no ``*args``, ``**kwargs`` or keyword-only parameters (a second required parameter already fails step 2,
   where ``f(None)`` lacks an argument). Then a draw: with probability
   ``1 - trivial_reject_rate`` the puzzle is kept without any further check (the reference returns no tests).
   Otherwise ``answer_unused`` (the answer's name occurs at most once in the text, regex ``\\bname\\b``),
   ``bool_answer``, ``unsupported_answer_type`` (not int, float, str, or List[...] of int/float/str/bool,
   nested).
4. ``trivial_answer``: some small value of the answer type makes ``assert f(value)`` pass, or raises a
   NameError (the reference wraps the call in ``try/except NameError: pass``, so a NameError also rejects).
   The reference runs one program per value; here each value runs in a process of its own, forked from a
   sandbox where no program ran, so one call cannot leave state (a default list that remembers) or spend CPU
   time that the next one needs. ``trivial_test_incomplete`` (project addition): the sandbox failed (timed
   out, crashed) so often that some values were never tried.

Then project additions the reference does not have: ``reads_environment_name``, a puzzle that reads ``g`` or a
judge-only name (``Set``, ``Tuple``, ``Dict``), which could catch the NameError in some of its runs and not in
others (so its check would not be its training text's; the trivial test's NameError rejects only those it tests);
and (the reference bounds length only through the 200-token generation budget and deduplicates only the final
training text) ``duplicate_puzzle`` (exact text, first kept) and ``too_long``. Every verdict is a function of
the puzzle text (the draw is seeded by it), so the duplicate check commutes with the others: a Beam job may
deduplicate first to save sandbox time and keep the same puzzles.

Execution is not done here. Steps 2 and 4 are split into a builder (``return_true_program``,
``trivial_programs`` / ``trivial_candidates``) and a reader (``read_return_true``, ``read_trivial_programs`` /
``read_trivial_outcomes``) of plain-data results.
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import hashlib
import itertools
import json
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from transforms.selfplay.address_order import REASON as HASHES_BY_ADDRESS
from transforms.selfplay.address_order import address_hash_route
from transforms.selfplay.determinism import REASON as DRAWS_UNSEEDED_RANDOM
from transforms.selfplay.determinism import unseeded_random_route
from transforms.selfplay.finalizers import REASON as FINALIZES_GENERATOR
from transforms.selfplay.finalizers import generator_finalizer_route
from transforms.selfplay.introspection import REASON as REACHES_INTERPRETER
from transforms.selfplay.introspection import interpreter_route
from transforms.selfplay.preset import FilterStrings, load_preset
from transforms.selfplay.puzzle_fingerprint import fingerprint
from transforms.selfplay.source import answer_parameter, first_function, imported_names, strip_puzzle

REASONS = (
    "missing_def_f",
    "missing_return",
    "p3_test_puzzle",  # project addition: a P3 test puzzle up to formatting and renaming (puzzle_fingerprint.py)
    "unsafe_code",
    "reaches_interpreter",  # project addition: the puzzle touches the interpreter's internals (introspection.py)
    "draws_unseeded_random",  # project addition: may draw from random not seeded by a constant (determinism.py)
    "finalizes_generator",  # project addition: a generator holds a finalizer the collector may run (finalizers.py)
    "hashes_by_address",  # project addition: a set or text may hold objects hashed by address (address_order.py)
    "return_true_failed",
    "answer_annotation_invalid",
    "bad_signature",
    "answer_unused",
    "bool_answer",
    "unsupported_answer_type",
    "trivial_answer",
    "reads_environment_name",  # project addition: the puzzle reads g or a judge-only name (environment_names)
    "duplicate_puzzle",  # project addition
    "too_long",  # project addition
    "trivial_test_incomplete",  # project addition: the sandbox failed too often to try every small answer
)
MAX_PUZZLE_CHARS = 4000

# The reference's small answers (gen.py get_trivial_tests).
INT_CANDIDATES = tuple(range(-10, 101))
STR_CANDIDATES = ("cat", "dog", "aa", "ab", "foo", "bar", "baz", "")
FLOAT_CANDIDATES = (-100.0, -10.0, -2.0, -1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0)
LIST_BASES: dict[str, tuple[Any, ...]] = {
    "int": tuple(range(-3, 4)),
    "str": ("a", "b", "foo", "bar", "baz"),
    "bool": (True, False),
    "float": (-1.0, -0.1, 0.0, 0.1, 0.5, 1.0, 2.0),
}
LIST_MAX_LEN = 2  # lists of length 0, 1 and 2 over the base

# What one trivial-candidate call can come to (``read_trivial_outcomes``): f returned exactly True, another
# truthy value, a falsy value, raised NameError, raised something else, ran out of time, or was never run
# (the sandbox failed too often before its turn).
CANDIDATE_OUTCOMES = ("true", "truthy", "falsy", "name_error", "error", "timeout", "not_evaluated")
TRIVIAL_OUTCOMES = frozenset({"true", "truthy", "name_error"})


def _strings(strings: FilterStrings | None) -> FilterStrings:
    return strings or load_preset().filters


# --------------------------------------------------------------------------------------------- step 1

def check_text(text: str) -> tuple[str, str | None]:
    """(the puzzle cut at the end of its function, reason or None)."""
    puzzle = strip_puzzle(text)
    if not puzzle.startswith("def f("):
        return puzzle, "missing_def_f"
    if "return" not in puzzle:
        return puzzle, "missing_return"
    return puzzle, None


def p3_test_reason(puzzle: str, test_index: Mapping[str, str]) -> tuple[str, str] | None:
    """``("p3_test_puzzle", name)`` when ``puzzle`` is, up to formatting and renaming, the P3 test puzzle ``name``
    of ``test_index`` (``puzzle_fingerprint.fingerprint_index`` of every test instance)."""
    if not test_index:
        return None
    name = test_index.get(fingerprint(puzzle) or "")
    return ("p3_test_puzzle", f"P3 test puzzle {name}") if name else None


# --------------------------------------------------------------------------------------------- step 2

def _unsafe_import(code: str, safe: frozenset[str]) -> bool:
    if "import" not in code:
        return False
    for line in code.split("\n"):
        if "import" not in line:
            continue
        from_import = re.match(r"\s*from\s+([\w.]+)\s+import\s", line)
        plain_import = re.match(r"\s*import\s+(.+)", line)
        if from_import:
            modules = [from_import.group(1)]
        elif plain_import:
            modules = plain_import.group(1).split(",")
        else:
            return True  # "import" somewhere else on the line: the judge refuses it
        if any(m.strip() not in safe for m in modules):
            return True
    return False


def unsafe_reason(code: str, strings: FilterStrings | None = None) -> str | None:
    """``"unsafe_code"`` when the reference's judge would refuse to run ``code`` at all (judge.py)."""
    s = _strings(strings)
    if any(u in code for u in s.unsafe_substrings) or _unsafe_import(code, frozenset(s.safe_imports)):
        return "unsafe_code"
    return None


def interpreter_reason(puzzle: str) -> str | None:
    """``"reaches_interpreter"`` when the model-written puzzle could rewrite or read the process that judges it
    (``transforms.selfplay.introspection``): its verdict would not be the one plain Python gives."""
    return REACHES_INTERPRETER if interpreter_route(puzzle) else None


# The static rules against verdicts that hold in some runs only (a draw, the collector's timing, an address order),
# checked in this order before anything runs: (reason, route function, what a refused solution does).
RUN_DEPENDENCE_RULES = (
    (DRAWS_UNSEEDED_RANDOM, unseeded_random_route, "draws from randomness not seeded by a constant"),
    (FINALIZES_GENERATOR, generator_finalizer_route, "holds a generator's finalizer"),
    (HASHES_BY_ADDRESS, address_hash_route, "may put objects hashed by address in a set, or show an address in text"),
)


def run_dependence(code: str) -> tuple[str, str, str] | None:
    """(reason, what it does, route) of the first ``RUN_DEPENDENCE_RULES`` rule model-written ``code`` breaks, or
    None: unseeded ``random`` (``determinism``), a generator's finalizer, run when the garbage collector collects it
    at a point that differs between the sandbox and a plain script (``finalizers``), objects hashed by address in a
    set, whose order follows ASLR (``address_order``)."""
    for reason, route_of, what in RUN_DEPENDENCE_RULES:
        route = route_of(code)
        if route:
            return reason, what, route
    return None


def run_dependence_reason(puzzle: str) -> str | None:
    found = run_dependence(puzzle)
    return found[0] if found else None


def return_true_program(puzzle: str, strings: FilterStrings | None = None, preamble: bool = True) -> str:
    """The program of step 2: the puzzle with ``return True`` as its second line, then ``assert f(None)``. It must
    run without an exception within 1 s. ``preamble`` puts the names the judge's environment provides in front."""
    s = _strings(strings)
    lines = puzzle.split("\n")
    lines.insert(1, s.return_true_line)
    program = "\n".join([*lines, "", s.return_true_check])
    return s.judge_preamble + program if preamble else program


def read_return_true(ran_cleanly: bool) -> str | None:
    return None if ran_cleanly else "return_true_failed"


# --------------------------------------------------------------------------------------------- step 3

@dataclasses.dataclass(frozen=True)
class SignatureVerdict:
    reason: str | None
    answer_name: str | None = None
    answer_type: str | None = None  # "int", "List[int]", ... as P3 writes ans_type; None when unreadable
    tested: bool = False  # whether the trivial-answer test applies (the draw fell within trivial_reject_rate)
    candidates: tuple[Any, ...] = ()


def trivial_draw(puzzle: str, seed: int) -> float:
    """A uniform number in [0, 1) that depends only on (seed, puzzle text)."""
    digest = hashlib.sha256(f"selfplay_trivial_draw\0{seed}\0{puzzle}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _free_names(node: ast.AST) -> set[str]:
    """Names an expression reads that it does not bind itself (comprehension targets, lambda arguments)."""
    loaded, bound = set(), set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loaded if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
    return loaded - bound


def _definition_names(fn: ast.FunctionDef) -> set[str]:
    """Names evaluated when the ``def`` runs: annotations and defaults."""
    args = fn.args
    exprs = [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
             if a is not None and a.annotation is not None]
    exprs += [d for d in (*args.defaults, *args.kw_defaults) if d is not None]
    if fn.returns is not None:
        exprs.append(fn.returns)
    return set().union(*(_free_names(e) for e in exprs)) if exprs else set()


def answer_type_text(annotation: ast.expr) -> tuple[str, bool]:
    """(the annotation as text, whether it was written as a string)."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value.strip(), True
    return ast.unparse(annotation), False


def _list_type(text: str) -> tuple[str, int] | None:
    """(base, depth) of ``List[...[base]...]``, or None when ``text`` is not such a type."""
    depth = text.count("List[")
    base = text.replace("List[", "").replace("]", "")
    if depth == 0 or base not in LIST_BASES or text != "List[" * depth + base + "]" * depth:
        return None
    return base, depth


def trivial_candidates(answer_type: str) -> list[Any]:
    """The reference's small values for an answer type (``int``, ``str``, ``float``, ``List[...]``)."""
    simple = {"int": INT_CANDIDATES, "str": STR_CANDIDATES, "float": FLOAT_CANDIDATES, "bool": (True, False)}
    if answer_type in simple:
        return list(simple[answer_type])
    shape = _list_type(answer_type)
    if shape is None:
        raise ValueError(f"no trivial candidates for answer type {answer_type!r}")
    base, depth = shape
    values = [list(t) for n in range(LIST_MAX_LEN + 1) for t in itertools.product(LIST_BASES[base], repeat=n)]
    for _ in range(depth - 1):
        values = [[v] for v in values]
    if [] not in values:
        values.append([])
    return values


def check_signature(puzzle: str, *, trivial_reject_rate: float | None = None, seed: int = 0,
                    strings: FilterStrings | None = None, imported: Iterable[str] = ()) -> SignatureVerdict:
    """Step 3 on a puzzle that passed steps 1 and 2 (so its ``def`` executes in the judge). ``imported``: names
    that the puzzle's own leading imports bind (seed-preset puzzles; the reference's puzzles have none)."""
    s = _strings(strings)
    rate = s.trivial_reject_rate if trivial_reject_rate is None else trivial_reject_rate
    try:
        fn = first_function(puzzle)
        answer = answer_parameter(puzzle)
    except (SyntaxError, ValueError):
        return SignatureVerdict("answer_annotation_invalid")
    known = set(dir(builtins)) | set(s.definition_names) | set(imported)
    unknown = _definition_names(fn) - known
    if answer is None or answer.annotation is None or unknown:
        return SignatureVerdict("answer_annotation_invalid")
    text, quoted = answer_type_text(answer.annotation)
    args = fn.args
    positional = args.posonlyargs + args.args
    if len(args.defaults) != len(positional) - 1 or args.vararg or args.kwarg or args.kwonlyargs:
        return SignatureVerdict("bad_signature", answer.name, text)
    if trivial_draw(puzzle, seed) >= rate:
        return SignatureVerdict(None, answer.name, text, tested=False)  # kept untested, as the reference does
    if len(re.findall(r"\b" + re.escape(answer.name) + r"\b", puzzle)) <= 1:
        return SignatureVerdict("answer_unused", answer.name, text)
    if text == "bool" and not quoted:
        return SignatureVerdict("bool_answer", answer.name, text)
    if (quoted and text in ("int", "float", "str", "bool")) or (
            text not in ("int", "float", "str") and _list_type(text) is None):
        return SignatureVerdict("unsupported_answer_type", answer.name, text)
    return SignatureVerdict(None, answer.name, text, tested=True, candidates=tuple(trivial_candidates(text)))


# --------------------------------------------------------------------------------------------- step 4

def candidate_literal(value: Any) -> str:
    """How the reference writes a candidate into a program (utils.stringify): JSON for a str, str() otherwise."""
    return json.dumps(value) if isinstance(value, str) else str(value)


def trivial_preamble(strings: FilterStrings | None = None) -> str:
    """The names the trivial-answer test's programs see besides builtins: gen.py runs them with ``env = {"List":
    List}`` (``definition_names``), not the judge's List, Set, Tuple and Dict. A puzzle that reads ``Dict`` raises a
    NameError there, which that test counts as trivial (it used to run with the judge's names, and such a puzzle
    was kept)."""
    s = _strings(strings)
    return f"from typing import {', '.join(s.definition_names)}\n\n" if s.definition_names else ""


def trivial_programs(puzzle: str, candidates: Sequence[Any], strings: FilterStrings | None = None,
                     preamble: bool = True) -> list[str]:
    """One program per candidate; a program that runs cleanly within 1 s means the puzzle is trivial."""
    s = _strings(strings)
    head = trivial_preamble(s) if preamble else ""
    return [head + s.trivial_program.format(puzzle=puzzle, candidate=candidate_literal(c)) for c in candidates]


def read_trivial_programs(ran_cleanly: Sequence[bool]) -> str | None:
    return "trivial_answer" if any(ran_cleanly) else None


def read_trivial_outcomes(outcomes: Sequence[str]) -> str | None:
    """The same verdict from per-candidate outcomes (``CANDIDATE_OUTCOMES``) of a batch check of f."""
    unknown = set(outcomes) - set(CANDIDATE_OUTCOMES)
    if unknown:
        raise ValueError(f"unknown candidate outcomes {sorted(unknown)}; expected {CANDIDATE_OUTCOMES}")
    if any(o in TRIVIAL_OUTCOMES for o in outcomes):
        return "trivial_answer"
    # The reference tries every candidate. One not tried might be the trivial answer: the puzzle is not kept.
    return "trivial_test_incomplete" if "not_evaluated" in outcomes else None


# ------------------------------------------------------------------------------------ project additions

def too_long_reason(puzzle: str, max_chars: int = MAX_PUZZLE_CHARS) -> str | None:
    return "too_long" if len(puzzle) > max_chars else None


SOLUTION_NAME = "g"  # the solution's name beside f in the training text and the literal check (puzzles.canonical)


def environment_names(strings: FilterStrings | None = None) -> frozenset[str]:
    """Names defined where some of f's runs happen and not where others do: the judge's names beyond the training
    text's (``Set``, ``Tuple``, ``Dict``: f is checked on g's answer under the judge's preamble) and the solution's
    name (defined beside f in the training text, absent where f is checked on g's answer and in the trivial
    test)."""
    s = _strings(strings)
    return (imported_names(s.judge_preamble) - set(s.definition_names)) | {SOLUTION_NAME}


def environment_name_reason(puzzle: str, strings: FilterStrings | None = None) -> str | None:
    """``"reads_environment_name"`` when the puzzle reads (or deletes, or declares global) a name of
    ``environment_names``: a NameError caught there tells one run of f from another, so its verdict need not be
    the training text's (``try: g`` ... ``except NameError: return x == 5``). A name the puzzle only assigns is
    local, and reading it before then fails the same way everywhere."""
    try:
        tree = ast.parse(puzzle)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # the other filters report it
    names = environment_names(strings)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id in names and not isinstance(node.ctx, ast.Store)) or (
                isinstance(node, (ast.Global, ast.Nonlocal)) and names.intersection(node.names)):
            return "reads_environment_name"
    return None


# ------------------------------------------------------------------------------------------ all together

@dataclasses.dataclass(frozen=True)
class FilterOutcome:
    index: int
    puzzle: str  # the text cut at the end of its function
    reason: str | None  # None = kept
    answer_type: str | None = None
    tested: bool = False


def filter_puzzles(texts: Iterable[str], run_program: Callable[[str], bool], *,
                   trivial_reject_rate: float | None = None, seed: int = 0, known: Iterable[str] = (),
                   max_chars: int = MAX_PUZZLE_CHARS, strings: FilterStrings | None = None,
                   test_index: Mapping[str, str] | None = None) -> list[FilterOutcome]:
    """Every filter in order on each text; ``run_program(program) -> ran cleanly`` executes (a sandbox in
    production). ``known`` puzzles count as already seen for the duplicate check; ``test_index`` holds the P3 test
    puzzles' fingerprints (``puzzle_fingerprint.fingerprint_index``)."""
    s = _strings(strings)
    seen = set(known)
    out = []
    for index, text in enumerate(texts):
        puzzle, reason = check_text(text)
        verdict = SignatureVerdict(None)
        if reason is None:
            reason = (p3_test_reason(puzzle, test_index or {}) or (None,))[0]
        if reason is None:
            reason = (unsafe_reason(puzzle, s) or interpreter_reason(puzzle) or run_dependence_reason(puzzle)
                      or read_return_true(run_program(return_true_program(puzzle, s))))
        if reason is None:
            verdict = check_signature(puzzle, trivial_reject_rate=trivial_reject_rate, seed=seed, strings=s)
            reason = verdict.reason
        if reason is None and verdict.tested:
            reason = read_trivial_programs([run_program(p) for p in trivial_programs(puzzle, verdict.candidates, s)])
        if reason is None:
            reason = environment_name_reason(puzzle, s)
        if reason is None:
            reason = "duplicate_puzzle" if puzzle in seen else too_long_reason(puzzle, max_chars)
        if reason is None:
            seen.add(puzzle)
        out.append(FilterOutcome(index, puzzle, reason, verdict.answer_type, verdict.tested))
    return out
