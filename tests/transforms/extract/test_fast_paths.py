"""The shortcuts that make extraction fast give the answers of the plain computations they replace.

Each reference below is written out here, as the code computed it before the shortcut (full signal scores with
every regex run, ``textwrap.dedent`` on every snippet, the AST walk for "is it code"), and compared on texts
built here, on the standard library and on Code Alpaca.
"""
from __future__ import annotations

import ast
import functools
import json
import re
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.transforms.extract.test_policies import ADVERSARIAL, PROSE, SAMPLES
from transforms.extract.detect import _PYTHON_SCORER, STRONG_SCORE, _Sample, detect_language, signal_scores
from transforms.extract.fences import find_first_fence
from transforms.extract.languages import DETECTION_PRIORITY, LANGUAGES
from transforms.extract.literals import may_match, required_substrings
from transforms.extract.syntax import compile_quietly, python_code_is_code, python_is_code, syntax_error
from transforms.extract.whitespace import normalize_code, normalized_code_key, normalized_code_key_of_normalized

pytestmark = pytest.mark.filterwarnings("ignore:::<inverse_instruct_snippet>")


@functools.lru_cache(maxsize=None)
def stdlib_chunks(limit: int = 600) -> list[str]:
    """Pieces of real Python: blocks of 1-40 lines of standard-library modules (many are not valid alone)."""
    chunks = []
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py"))[:120]:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        for start in range(0, len(lines), 97):
            chunks.append("\n".join(lines[start : start + 1 + start % 40]))
    assert len(chunks) > limit
    return tuple(chunks[:limit])


@functools.lru_cache(maxsize=None)
def stdlib_statements(limit: int = 1500) -> list[str]:
    """Top-level statements of standard-library modules, as written: definitions, imports, docstrings..."""
    statements = []
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py"))[:80]:
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.split("\n")
        statements += [textwrap.dedent("\n".join(lines[node.lineno - 1 : node.end_lineno])) for node in tree.body]
    assert len(statements) > limit
    return tuple(statements[:limit])


def code_alpaca(shared: Path) -> list[str]:
    return [row["output"] for row in json.loads((shared / "code_alpaca_2k.json").read_text())]


def texts_built_here() -> list[str]:
    texts = [code for pair in SAMPLES.values() for code in pair] + PROSE + ADVERSARIAL + list(stdlib_chunks())
    texts += ["  indented\n    more\n\n  end", "\tx\n\t\ty", "\r\n\r\n  a\r\n  b  \r\n", "", " \n\t\n", "a\n\n\n\nb"]
    texts += ["x" * 500 + "\ndef f(a):\n    return a", "<?php\n$a = 1;", "SELECT 1;", "<div>x</div>",
              ".a { color: red; }"]
    return texts


# ------------------------------------------------------------------------------- substring prefilter


def test_required_substrings_of_known_patterns():
    assert required_substrings(re.compile(r"console\.(?:log|error)\(")) == {"console."}
    assert required_substrings(re.compile(r"\$\w|<\?php")) == {"$", "<?php"}
    assert required_substrings(re.compile(r"^[ \t]*+def[ \t]++\w")) == {"def"}
    assert required_substrings(re.compile(r"(?:ab)+c?")) == {"ab"}
    assert required_substrings(re.compile(r"(?:ab)?c")) == {"c"}  # an optional group requires nothing
    assert required_substrings(re.compile(r"a|\w")) is None  # one branch needs no literal
    assert required_substrings(re.compile(r"select", re.IGNORECASE)) is None
    assert required_substrings(re.compile(r"[abc]+\d")) is None
    assert may_match(None, "anything") and not may_match(frozenset({"x"}), "abc") and may_match(frozenset({"b"}), "abc")


def language_regexes() -> list[re.Pattern[str]]:
    regexes = []
    for spec in LANGUAGES.values():
        regexes += [r for r in (spec.gate, spec.veto) if r is not None]
        regexes += [m for m, _ in spec.signals if not isinstance(m, frozenset)]
    assert len(regexes) > 100
    return regexes


def test_prefilter_never_rules_out_a_regex_that_matches():
    regexes = language_regexes()
    texts = texts_built_here()
    matched = ruled_out = 0
    for pattern in regexes:
        substrings = required_substrings(pattern)
        for text in texts:
            if pattern.search(text):
                matched += 1
                assert may_match(substrings, text), (pattern.pattern, sorted(substrings), text[:200])
            elif not may_match(substrings, text):
                ruled_out += 1
    assert matched > 1000 and ruled_out > 10_000  # the check ran, and the prefilter does prune


# ------------------------------------------------------------------------------------- signal scores


def reference_signal_scores(code: str) -> dict[str, float]:
    """Every gate, veto and signal run on the sample, as the detector did before its shortcuts."""
    sample = code[:8000]
    if re.search("[^\n]{401}", sample):
        sample = "\n".join(line[:400] for line in sample.split("\n"))
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sample))
    scores = {}
    for name in DETECTION_PRIORITY:
        spec = LANGUAGES[name]
        if ((spec.gate is not None and not spec.gate.search(sample))
                or (spec.veto is not None and spec.veto.search(sample))):
            continue
        score = sum(w for m, w in spec.signals if (m & words if isinstance(m, frozenset) else m.search(sample)))
        if score:
            scores[name] = score
    return scores


def test_signal_scores_match_the_full_computation():
    texts = texts_built_here()
    scored = 0
    for text in texts:
        expected = reference_signal_scores(text)
        assert signal_scores(text) == expected, text[:200]
        scored += bool(expected)
    assert scored > 500


def test_signal_scores_match_on_code_alpaca(shared_data):
    outputs = code_alpaca(shared_data)
    assert outputs
    for output in outputs:
        assert signal_scores(output) == reference_signal_scores(output), output[:200]


def check_python_scores_below_the_fast_path_threshold(texts: list[str]) -> int:
    """Asserts each early-stopped Python score below STRONG_SCORE is the full score; returns how many were."""
    below = 0
    for text in texts:
        sample = _Sample(text)
        early = _PYTHON_SCORER.score(sample, enough=STRONG_SCORE)
        if early < STRONG_SCORE:
            assert early == _PYTHON_SCORER.score(_Sample(text)) == reference_signal_scores(text).get("python", 0.0)
            below += 1
    return below


def test_python_score_below_the_fast_path_threshold_is_the_full_score():
    # detect_language reuses the fast path's early-stopping score as Python's score when it stays below STRONG_SCORE.
    assert check_python_scores_below_the_fast_path_threshold(texts_built_here()) > 200  # 277 of 709 texts


def test_python_score_below_the_fast_path_threshold_is_the_full_score_on_code_alpaca(shared_data):
    outputs = code_alpaca(shared_data)
    assert outputs
    assert check_python_scores_below_the_fast_path_threshold(outputs) > 1000  # 1,387 of 2,017 outputs


# ------------------------------------------------------------------------------------- normalization


def reference_normalize(code: str) -> str:
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return textwrap.dedent("\n".join(lines))


def test_normalize_and_key_match_the_plain_computation():
    texts = texts_built_here() + ["\u00a0x\n y", "\x0cx\n y", " x\n\ty", "\n\n  a\n\n    b\n  \n"]
    for text in texts:
        normalized = normalize_code(text)
        assert normalized == reference_normalize(text), repr(text[:100])
        assert normalize_code(normalized) == normalized
        reference_key = "python\n" + "\n".join(line for line in normalized.split("\n") if line)
        assert normalized_code_key(text, "python") == reference_key
        assert normalized_code_key_of_normalized(normalized, "python") == reference_key


# ------------------------------------------------------------------------------------- Python checks


def test_code_object_says_code_exactly_when_the_ast_does():
    snippets = [
        "def f():\n    return 1", "class A:\n    pass", "x = 1", "print(x)", "42", "[1, 2]", "true", "x",
        "Max: 20", "a + b", "lambda: 0", "[i for i in y]", "(i for i in y)", "if 0:\n    def f(): pass",
        "'''doc'''\n", "x: int = 1", "import os", "-1", "{'a': 1}", "f'{x}'", "a if b else c", "...",
    ] + list(stdlib_statements())
    compared = kinds = 0
    for code in snippets:
        try:
            compiled = compile_quietly(code)
        except (SyntaxError, ValueError):
            continue
        compared += 1
        is_code = python_is_code(ast.parse(code))
        kinds |= 1 << is_code
        assert python_code_is_code(code, compiled) == is_code, code[:200]
    assert compared > 1000 and kinds == 3  # both answers were seen


def test_python_validity_is_cpythons_verdict():
    # tree-sitter's Python grammar rejects some valid code; CPython alone decides now.
    assert syntax_error('host, *rest = endpoint, *[]', "python") is None
    assert syntax_error("print 'x'", "python") and syntax_error("return 1", "python")
    checked = 0
    for chunk in stdlib_chunks(300) + stdlib_statements(300):
        try:
            compile(chunk, "<chunk>", "exec", dont_inherit=True)
            valid = True
        except (SyntaxError, ValueError):
            valid = False
        assert (syntax_error(chunk, "python") is None) == valid
        checked += valid
    assert checked > 300


def test_detection_of_python_needs_code_not_just_a_literal():
    assert detect_language("def f(x):\n    return x + 1").language == "python"
    assert detect_language("None").language is None


# ---------------------------------------------------------------------------------------------- fences


def test_fence_scan_starts_at_the_first_fence_line():
    text = "Use ```x``` inline, or ~~~ here.\nThen:\n```py\nprint(1)\n```\n"
    fence = find_first_fence(text)
    assert fence is not None and (fence.info, fence.body) == ("py", "print(1)")
    assert find_first_fence("no fence at all\nprint(1)") is None
    tilde_first = find_first_fence("~~~\nA\n~~~\n```py\nB\n```")
    assert tilde_first is not None and tilde_first.body == "A"
    assert find_first_fence("a\r\n```js\r\nx;\r\n```").body == "x;"


_REFERENCE_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$", re.MULTILINE)


def reference_first_fence(text: str) -> tuple | None:
    """(info, body, fence, closed) of the first fence, every line tried by the regexes, as before the shortcuts."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for opening in _REFERENCE_OPENING.finditer(text):
        fence, info = opening.group("fence"), opening.group("info")
        if fence[0] == "`" and "`" in info:
            continue
        closing_re = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{%d,}[ \t]*$" % len(fence), re.MULTILINE)
        body_start = min(opening.end() + 1, len(text))
        closing = closing_re.search(text, body_start)
        if closing is None:
            body, closed = text[body_start:], False
        else:
            body, closed = text[body_start : max(body_start, closing.start() - 1)], True
        indent = len(opening.group("indent"))
        if indent:
            body = "\n".join(line[:indent].lstrip(" \t") + line[indent:] for line in body.split("\n"))
        return info.strip(), body, fence, closed
    return None


def fence_texts(seed: int = 7, n: int = 20_000) -> list[str]:
    """Random Markdown-ish texts made of fence runs, blanks, inline code and words: every edge of the fence rules."""
    import random

    rng = random.Random(seed)
    pieces = ["```", "````", "~~~", "~~~~", "``", "~", "`", " ", "\t", "\n", "\n", "\n", "\r\n", "\r", "py",
              "x", "```py", "  ```", "\t~~~~ js", "print(1)", " ```x``` "]
    return ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 16))) for _ in range(n)]


def check_first_fences(texts: list[str]) -> tuple[int, int]:
    """Asserts the first fence of each text is the regex scan's; returns (fences found, fences closed)."""
    found = closed = 0
    for text in texts:
        fence = find_first_fence(text)
        expected = reference_first_fence(text)
        assert (fence and (fence.info, fence.body, fence.fence, fence.closed)) == expected, repr(text[:200])
        found += fence is not None
        closed += bool(fence and fence.closed)
    return found, closed


def test_first_fence_matches_the_regex_scan():
    texts = fence_texts() + texts_built_here()
    texts += [f"Intro:\n{fence}{tag}\n{chunk}\n{close}\nOutro ``` {fence}"
              for chunk in stdlib_chunks(200) for fence, tag, close in
              (("```", "python", "```"), ("~~~~", "", "~~~~~ "), ("  ```", "py", "\t```"), ("````", "", "```"))]
    found, closed = check_first_fences(texts)
    assert found > 5000 and closed > 1000 and len(texts) - found > 5000  # every outcome was compared


def test_first_fence_matches_the_regex_scan_on_code_alpaca(shared_data):
    outputs = code_alpaca(shared_data)
    assert outputs
    check_first_fences(outputs)  # the outputs are bare code: this checks neither side finds a fence in them
