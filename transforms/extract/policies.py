"""Stage 1: take one code snippet out of an (instruction, response) pair. Pure functions, no Beam.

``extract_code(response, config)`` returns an :class:`Extracted` snippet or a :class:`Rejection` whose
``reason`` is one of :data:`REJECTION_REASONS`. Two policies:

``paper`` -- the reference code (InverseCoder ``extract_code_first_block``), reproduced exactly:

* A response containing three backticks keeps the text from the first three-backtick run to the next
  one, by plain substring search as the reference did: a run inside a line counts, and an unclosed
  fence runs to the end of the text minus its last character. The fence tag is what follows the first
  run on its line, exactly as written (``fence_lang``); ``language`` is its canonical name, or
  ``"unknown"``. Fenced code is neither syntax checked nor filtered.
* A response without three backticks is kept only if the whole, untouched response passes Python
  ``ast.parse``; it gets language ``python`` and fence tag ``python``, because the reference wrapped it
  in a fence tagged python and stage 2 read the tag from there (prefix "Write a python").
* ``Extracted.reference_snippet`` is the exact string the reference put in the prompt's ``{code}``.
* Deviations, all on degenerate input: a snippet with no code line is rejected as ``no_code`` (the
  reference kept it), and the bad-input checks below apply.

``multilang`` (default):

* Fences are found CommonMark-style (:func:`find_first_fence`): an opening line of >= 3 backticks or
  tildes, an info string (a backtick fence's info string may not contain a backtick, so
  ````` ```x``` ````` inside a line is inline code), and a closing line of the same character at least as
  long; shorter runs inside are content, so a four-backtick fence can hold a three-backtick one. The
  opening fence may be indented (by more than CommonMark's 3 spaces too, because LLM answers put fences
  inside list items); that indentation is removed from the content. An unclosed fence runs to the end
  of the text and is still syntax checked. Only the first fenced block is used.
* A fence tag naming a known language (:func:`transforms.extract.languages.normalize_fence_tag`) is trusted
  for the language and the code must parse in it. A missing tag or an unfenced response means the
  language is detected. An unknown tag (``text``, ``json``, ``vb``...) also triggers detection; if
  nothing is detected the reason is ``unknown_language``.
* Syntax check: Python must pass CPython's ``compile(code, ..., "exec")`` with no inherited flags, so
  ``return`` outside a function and Python 2 ``print x`` are rejected; compile-time warnings are not
  errors. Other languages: tree-sitter must produce no ERROR or MISSING node (``root_node.has_error``;
  a grammar may list MISSING tokens it inserts for valid code, e.g. Kotlin's optional semicolon).

``language_hint`` (both policies; source-tree definitions): the whole response is code of the hinted
language, checked like a tagged fence; a class member that is valid only inside a class (a JS or Java
method) is accepted when it parses inside the language's class shell. ``fence_lang`` is the language.

Language detection of untagged code: ``transforms.extract.detect``. Whitespace normalization:
``transforms.extract.whitespace``. Fences: ``transforms.extract.fences``. Syntax checks: ``transforms.extract.syntax``.

Bad input (both policies, checked before any parsing, in this order): ``None`` or a type other than
``str``/``bytes`` -> ``bad_record``; bytes longer than 4 x ``max_response_chars`` -> ``too_long``
without decoding; bytes that are not UTF-8, or a ``str`` holding lone surrogates -> ``not_utf8``;
more than ``max_response_chars`` characters -> ``too_long``; a NUL character anywhere -> ``bad_record``
(the text is valid UTF-8, so ``not_utf8`` would mislead; no source language allows NUL); empty or
whitespace-only -> ``no_code``. Length bounds on the snippet: the upper bounds are checked before
parsing (``too_long``), the lower bounds after the language is known (``too_short`` means "real code,
but too small").
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Union

from schemas.records import lone_surrogate_at
from transforms.extract.detect import detect_language
from transforms.extract.fences import find_first_fence
from transforms.extract.languages import LANGUAGES, fence_tag_token, normalize_fence_tag
from transforms.extract.reasons import (
    BAD_RECORD,
    NO_CODE,
    NOT_UTF8,
    REJECTION_REASONS,
    SYNTAX_ERROR,
    TOO_LONG,
    TOO_SHORT,
    UNKNOWN_LANGUAGE,
)
from transforms.extract.syntax import compile_quietly, syntax_error
from transforms.extract.whitespace import normalize_code

PAPER = "paper"
MULTILANG = "multilang"
POLICIES = (PAPER, MULTILANG)



@dataclass(frozen=True)
class ExtractionConfig:
    """How stage 1 extracts code. ``None`` for an upper bound or ``languages`` means "no limit"."""

    policy: str = MULTILANG
    min_lines: int = 1
    max_lines: int | None = 400
    min_chars: int = 10
    max_chars: int | None = 20_000
    # Guard on the whole response, checked before anything else: a 10 MB record is refused unread.
    max_response_chars: int = 1_000_000
    languages: frozenset[str] | None = None  # canonical names allowed; None = every known language

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown extraction policy {self.policy!r}; expected one of {POLICIES}")
        if self.languages is not None:
            languages = frozenset(self.languages)
            unknown = sorted(languages - set(LANGUAGES))
            if unknown:
                raise ValueError(f"unknown languages {unknown}; known: {sorted(LANGUAGES)}")
            object.__setattr__(self, "languages", languages)
        for name in ("min_lines", "min_chars", "max_response_chars"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_lines is not None and self.max_lines < self.min_lines:
            raise ValueError("max_lines < min_lines")
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars < min_chars")

    @classmethod
    def paper(cls, **overrides) -> "ExtractionConfig":
        """The reference behaviour: no length or language filter (the response guard still applies)."""
        settings = dict(policy=PAPER, min_lines=0, max_lines=None, min_chars=0, max_chars=None)
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def multilang(cls, **overrides) -> "ExtractionConfig":
        return cls(**{"policy": MULTILANG, **overrides})


@dataclass(frozen=True)
class Extracted:
    code: str  # normalized (see normalize_code)
    language: str  # canonical name; "unknown" only under the paper policy for an untagged/odd fence
    fence_lang: str  # the fence's language tag as written ("" when none); stage 2 appends it to the prefix
    fenced: bool
    detected: bool  # language guessed from the code rather than named by a fence tag
    reference_snippet: str = ""  # paper policy: exactly what the reference put into the prompt's {code}

    @property
    def n_lines(self) -> int:
        return self.code.count("\n") + 1

    @property
    def n_chars(self) -> int:
        return len(self.code)


@dataclass(frozen=True)
class Rejection:
    reason: str  # one of REJECTION_REASONS
    detail: str
    language: str = ""  # the language the code was checked against, when there was one

    def __post_init__(self) -> None:
        if self.reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {self.reason!r}")


ExtractionResult = Union[Extracted, Rejection]


def _coerce_text(response: object, config: ExtractionConfig) -> str | Rejection:
    if response is None:
        return Rejection(BAD_RECORD, "response is None")
    if isinstance(response, (bytes, bytearray)):
        if len(response) > 4 * config.max_response_chars:  # > max chars whatever the encoding
            return Rejection(TOO_LONG, f"response has {len(response)} bytes > 4 x {config.max_response_chars}")
        try:
            text = bytes(response).decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(NOT_UTF8, f"response bytes are not UTF-8: {exc.reason} at byte {exc.start}")
    elif isinstance(response, str):
        text = response
    else:
        return Rejection(BAD_RECORD, f"response is {type(response).__name__}, not str or bytes")
    if len(text) > config.max_response_chars:
        return Rejection(TOO_LONG, f"response has {len(text)} chars > {config.max_response_chars}")
    nul = text.find("\x00")
    if nul >= 0:
        return Rejection(BAD_RECORD, f"response contains a NUL character at offset {nul}")
    surrogate = lone_surrogate_at(text)
    if surrogate is not None:
        return Rejection(NOT_UTF8, f"response holds a lone surrogate at offset {surrogate}")
    if not text.strip():
        return Rejection(NO_CODE, "response is empty or whitespace")
    return text


def _check_bounds(code: str, config: ExtractionConfig, *, upper: bool, language: str = "") -> Rejection | None:
    n_chars, n_lines = len(code), code.count("\n") + 1
    if upper:
        if config.max_chars is not None and n_chars > config.max_chars:
            return Rejection(TOO_LONG, f"code has {n_chars} chars > {config.max_chars}", language)
        if config.max_lines is not None and n_lines > config.max_lines:
            return Rejection(TOO_LONG, f"code has {n_lines} lines > {config.max_lines}", language)
        return None
    if n_chars < config.min_chars:
        return Rejection(TOO_SHORT, f"code has {n_chars} chars < {config.min_chars}", language)
    if n_lines < config.min_lines:
        return Rejection(TOO_SHORT, f"code has {n_lines} lines < {config.min_lines}", language)
    return None


def _not_allowed(language: str, config: ExtractionConfig) -> Rejection | None:
    if config.languages is not None and language not in config.languages:
        return Rejection(UNKNOWN_LANGUAGE, f"language {language} is not in the allowed set", language)
    return None


def _extract_paper(text: str, config: ExtractionConfig) -> ExtractionResult:
    if "```" not in text:
        try:
            compile_quietly(text, ast.PyCF_ONLY_AST)  # ast.parse of the whole raw response, as the reference
        except Exception as exc:  # the reference caught everything: any failure means "No Code!"
            return Rejection(NO_CODE, f"unfenced and not valid Python: {type(exc).__name__}: {exc}", "python")
        code, fence_lang, language = normalize_code(text), "python", "python"
        reference_snippet = "```python\n" + text + "```"
        fenced = False
    else:
        start = text.find("```")
        end = text.find("```", start + 1)
        block = text[start:end] or text[start:]  # end == -1 drops the last character, as in the reference
        reference_snippet = block + "```"
        lines = block.splitlines(keepends=True)
        if len(lines) < 2:
            return Rejection(NO_CODE, "first ``` block has no code line")
        fence_lang = lines[0].splitlines()[0].split("```")[1]
        code = normalize_code("".join(lines[1:]))
        language = normalize_fence_tag(fence_lang) or "unknown"
        fenced = True
    if not code:
        return Rejection(NO_CODE, "first ``` block is empty" if fenced else "response is blank")
    rejection = (
        _check_bounds(code, config, upper=True, language=language)
        or _not_allowed(language, config)
        or _check_bounds(code, config, upper=False, language=language)
    )
    if rejection:
        return rejection
    return Extracted(code, language, fence_lang, fenced=fenced, detected=False, reference_snippet=reference_snippet)


def _extract_multilang(text: str, config: ExtractionConfig) -> ExtractionResult:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    fence = find_first_fence(text)
    if fence is None:
        code, fence_lang, tagged_language = normalize_code(text), "", None
    else:
        code, fence_lang = normalize_code(fence.body), fence_tag_token(fence.info)
        tagged_language = normalize_fence_tag(fence.info)
    if not code:
        return Rejection(NO_CODE, "first fenced block is empty" if fence else "response is blank")
    rejection = _check_bounds(code, config, upper=True, language=tagged_language or "")
    if rejection:
        return rejection
    if tagged_language:
        language, detected = tagged_language, False
        rejection = _not_allowed(language, config)
        if rejection:
            return rejection
        error = syntax_error(code, language)
        if error:
            return Rejection(SYNTAX_ERROR, f"fence tag {fence_lang!r}: {error}", language)
    else:
        detection = detect_language(code)
        if detection.language is None:
            if fence_lang:
                return Rejection(
                    UNKNOWN_LANGUAGE,
                    f"fence tag {fence_lang!r} names no supported language and the code was not recognized "
                    f"({detection.reason}: {detection.detail})",
                    detection.guess,
                )
            return Rejection(detection.reason, detection.detail, detection.guess)
        language, detected = detection.language, True
        rejection = _not_allowed(language, config)
        if rejection:
            return rejection
    rejection = _check_bounds(code, config, upper=False, language=language)
    if rejection:
        return rejection
    return Extracted(code, language, fence_lang, fenced=fence is not None, detected=detected)


def _extract_hinted(text: str, language_hint: str, config: ExtractionConfig) -> ExtractionResult:
    language = normalize_fence_tag(language_hint)
    if language is None:
        return Rejection(UNKNOWN_LANGUAGE, f"language hint {language_hint!r} names no supported language")
    code = normalize_code(text[1:] if text.startswith("\ufeff") else text)
    if not code:
        return Rejection(NO_CODE, "response is blank", language)
    rejection = _check_bounds(code, config, upper=True, language=language) or _not_allowed(language, config)
    if rejection:
        return rejection
    error = syntax_error(code, language)
    shell = LANGUAGES[language].member_shell
    if error and shell and syntax_error(shell[0] + code + shell[1], language) is None:
        error = None  # a method of a class (source-tree splitting): valid where it was written
    if error:
        return Rejection(SYNTAX_ERROR, f"language hint {language_hint!r}: {error}", language)
    rejection = _check_bounds(code, config, upper=False, language=language)
    if rejection:
        return rejection
    # The paper's prompt shows the raw response as the reference fenced an unfenced one (``_extract_paper``).
    reference_snippet = f"```{language}\n{text}```" if config.policy == PAPER else ""
    return Extracted(code, language, language, fenced=False, detected=False, reference_snippet=reference_snippet)


DEFAULT_CONFIG = ExtractionConfig()


def extract_code(
    response: str | bytes | None, config: ExtractionConfig | None = None, *, language_hint: str | None = None
) -> ExtractionResult:
    """The snippet of one response, or why there is none (never raises on bad input).

    ``language_hint`` marks the response as raw code of a known language (a source-tree definition,
    language from the file extension). The whole response is the code (a docstring may hold fences),
    it must be valid in that language (a class member may be valid only inside a class), and
    ``fence_lang`` is the language name, as if the code had come fenced with it. The hint overrides
    the policy: the reference never read source trees, so there is nothing to reproduce. (Under ``paper``, the
    prompt's reference slice is the raw definition fenced as the reference fenced an unfenced response.)
    """
    config = config or DEFAULT_CONFIG
    text = _coerce_text(response, config)
    if isinstance(text, Rejection):
        return text
    if language_hint:
        return _extract_hinted(text, language_hint, config)
    if config.policy == PAPER:
        return _extract_paper(text, config)
    return _extract_multilang(text, config)
