"""Compiled (numba) scans for the n-gram hot path: one pass over the characters of a batch.

``normalize`` defines what the token values are (``reference_batch_values`` and the scalar tokenizers);
these kernels compute the same values with a single left-to-right walk instead of several numpy passes
plus a Python-level search for strings and comments, which was most of the cost of a check
(``bench/decontam.py``). ``tests/test_decontam_normalize.py`` checks them against the references.

All arithmetic on hashes is uint64 and wraps mod 2**64, like the numpy and pure-Python hashes.
Compiled code is cached on disk (``cache=True``), so a worker process compiles at most once.
"""
from __future__ import annotations

import numba
import numpy as np

# Character classes of ``normalize._char_classes`` (same order and values).
SPACE, WORD, DIGIT, DROP, PUNCT, STRMARK, SEP = range(7)

_CHAR_BASE = np.uint64(0x100000001B3)
_PUNCT_MULT = np.uint64(0xC2B2AE3D27D4EB4F)
_SEVEN = np.uint64(7)
_IDENT = np.uint64(0xA1A1_0000_0000_0001)
_STRING = np.uint64(0xA1A1_0000_0000_0002)
_NUMBER = np.uint64(0xA1A1_0000_0000_0003)
_SEPARATOR = np.uint64(0xA1A1_0000_0000_0004)

_HASH, _DQUOTE, _SQUOTE, _BACKTICK, _SLASH, _STAR, _BACKSLASH, _NEWLINE, _DOT = 35, 34, 39, 96, 47, 42, 92, 10, 46
_SPACE_CHAR, _TAB, _TILDE = 32, 9, 126


@numba.njit(cache=True, nogil=True)
def fence_line_end(cp, q):
    """End of the Markdown fence line (``normalize._FENCE_LINE``) that starts at ``q``, or -1: spaces and
    tabs, three or more backticks or tildes, then the rest of the line (no backtick after backticks)."""
    size = cp.size
    while q < size and (cp[q] == _SPACE_CHAR or cp[q] == _TAB):
        q += 1
    if q >= size or (cp[q] != _BACKTICK and cp[q] != _TILDE):
        return -1
    mark = cp[q]
    run = 0
    while q < size and cp[q] == mark:
        q += 1
        run += 1
    if run < 3:
        return -1
    while q < size and cp[q] != _NEWLINE and cp[q] != 0:
        if mark == _BACKTICK and cp[q] == _BACKTICK:
            return -1
        q += 1
    return q


@numba.njit(cache=True, nogil=True)
def match_blank(cp, p, c_family):
    """(end, is_string) of the comment, fence line or string literal that ``normalize._BLANK_RE[c_family]``
    matches at ``p``; end is -1 when it matches nothing there. Same alternatives, same order, same stops at
    \\x00."""
    size = cp.size
    c = cp[p]
    if c == _NEWLINE or p == 0:  # a fence line starts at a line break or at the start of the text
        e = fence_line_end(cp, p + 1 if c == _NEWLINE else p)
        if e >= 0:
            return e, False
        if c == _NEWLINE:
            return -1, False
    if c == _HASH:  # always matches, up to the end of the line
        e = p + 1
        while e < size and cp[e] != _NEWLINE and cp[e] != 0:
            e += 1
        return e, False
    if c == _DQUOTE or c == _SQUOTE or c == _BACKTICK:
        if c != _BACKTICK and p + 2 < size and cp[p + 1] == c and cp[p + 2] == c:
            i = p + 3  # triple-quoted: up to the first closing triple, if no \x00 comes first
            while i + 2 < size:
                x = cp[i]
                if x == 0:
                    break
                if x == c and cp[i + 1] == c and cp[i + 2] == c:
                    return i + 3, True
                i += 1
        i = p + 1  # one quote: escapes skip any character but \x00; only backticks span lines
        while i < size:
            x = cp[i]
            if x == c:
                return i + 1, True
            if x == _BACKSLASH:
                if i + 1 < size and cp[i + 1] != 0:
                    i += 2
                    continue
                break
            if x == 0 or (x == _NEWLINE and (c != _BACKTICK or fence_line_end(cp, i + 1) >= 0)):
                break
            i += 1
        return -1, False
    if c == _SLASH and p + 1 < size:
        if cp[p + 1] == _STAR:  # block comment: up to the first */, if no \x00 comes first
            i = p + 2
            while i + 1 < size:
                x = cp[i]
                if x == 0:
                    break
                if x == _STAR and cp[i + 1] == _SLASH:
                    return i + 2, False
                i += 1
        elif c_family and cp[p + 1] == _SLASH:
            e = p + 2
            while e < size and cp[e] != _NEWLINE and cp[e] != 0:
                e += 1
            return e, False
    return -1, False


@numba.njit(cache=True, nogil=True)
def _is_opener(x):
    return x == _HASH or x == _DQUOTE or x == _SQUOTE or x == _BACKTICK or x == _SLASH or x == _NEWLINE


@numba.njit(cache=True, nogil=True)
def blank_spans(cp, c_family, starts, ends, is_string):
    """Fill (starts, ends, is_string) with the matches of ``_BLANK_RE`` left to right (as ``finditer``
    finds them); return how many. The arrays need room for ``cp.size`` spans."""
    count = 0
    p = 0
    size = cp.size
    while p < size:
        if _is_opener(cp[p]) or p == 0:
            e, string = match_blank(cp, p, c_family)
            if e >= 0:
                starts[count] = p
                ends[count] = e
                is_string[count] = string
                count += 1
                p = e
                continue
        p += 1
    return count


@numba.njit(cache=True, nogil=True)
def _class_at(cls, cp, i, by_value):
    return cls[cp[i]] if by_value else cls[i]


@numba.njit(cache=True, nogil=True)
def _emit(values, starts, ends, n, value, start, end):
    values[n] = value
    if starts.size:  # offsets only when the caller asked for them
        starts[n] = start
        ends[n] = end


@numba.njit(cache=True, nogil=True)
def code_tokens(cp, cls, by_value, c_family, kept_shift, kept_table, values, starts, ends):
    """Code-view tokens of a batch (the values of ``normalize.reference_batch_values(..., "code")``) and
    their [start, end) offsets; returns the count. The class of character i is ``cls[cp[i]]`` when
    ``by_value`` (a table over all code points present), else ``cls[i]``. ``values`` needs room for
    ``cp.size`` tokens, and so do ``starts`` and ``ends`` unless they are empty (no offsets wanted).
    ``kept_table`` is the direct-mapped table of keyword and builtin hashes (``normalize._kept_table``)."""
    size = cp.size
    kept_mask = np.uint64(kept_table.size - 1)
    n = 0
    i = 0
    while i < size:
        c = _class_at(cls, cp, i, by_value)
        x = cp[i]
        if _is_opener(x) or i == 0:  # a comment or fence line vanishes; a string literal is one <str> token
            e, string = match_blank(cp, i, c_family)
            if e >= 0:
                if string:
                    _emit(values, starts, ends, n, _STRING, i, e)
                    n += 1
                i = e
                continue
        if c == SPACE or c == DROP:
            i += 1
            continue
        if c == WORD or c == DIGIT:
            # A word run; a '.' right after a run that began with a digit joins it, and so does the run
            # after that '.' (`1.5`, `1.`, `1.5.3`).
            j = i
            digit_run = c == DIGIT
            h = np.uint64(0)
            power = np.uint64(1)
            while True:
                while j < size:
                    k = _class_at(cls, cp, j, by_value)
                    if k != WORD and k != DIGIT:
                        break
                    h += np.uint64(cp[j]) * power
                    power *= _CHAR_BASE
                    j += 1
                if digit_run and j < size and cp[j] == _DOT:
                    h += np.uint64(_DOT) * power
                    power *= _CHAR_BASE
                    j += 1
                    if j < size:
                        k = _class_at(cls, cp, j, by_value)
                        if k == WORD or k == DIGIT:
                            digit_run = k == DIGIT
                            continue
                break
            if c == DIGIT:
                value = _NUMBER
            elif kept_table[(h >> kept_shift) & kept_mask] == h:
                value = h
            else:
                value = _IDENT
            _emit(values, starts, ends, n, value, i, j)
            n += 1
            i = j
            continue
        if x == 2:  # normalize._STRING_MARK
            value = _STRING
        elif x == 0:
            value = _SEPARATOR
        else:
            value = np.uint64(x) * _PUNCT_MULT + _SEVEN
        _emit(values, starts, ends, n, value, i, i + 1)
        n += 1
        i += 1
    return n


@numba.njit(cache=True, nogil=True)
def ascii_word_tokens(cp, lower, values, starts, ends):
    """Word-view tokens of a pure-ASCII batch (``reference_batch_values(..., "words")``): runs of
    letters and digits hashed lower-cased, a SEPARATOR token at each \\x00; returns the count. ``lower``
    maps a byte to its lower-case letter or digit, and every other byte to 0. Offsets as in ``code_tokens``."""
    size = cp.size
    n = 0
    i = 0
    while i < size:
        x = cp[i]
        if x == 0:
            _emit(values, starts, ends, n, _SEPARATOR, i, i + 1)
            n += 1
            i += 1
            continue
        if lower[x] == 0:
            i += 1
            continue
        j = i
        h = np.uint64(0)
        power = np.uint64(1)
        while j < size:
            y = lower[cp[j]]
            if y == 0:
                break
            h += np.uint64(y) * power
            power *= _CHAR_BASE
            j += 1
        _emit(values, starts, ends, n, h, i, j)
        n += 1
        i = j
    return n
