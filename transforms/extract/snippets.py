"""A CODE_SNIPPET record from a SOURCE_PAIR record: the extracted code with its provenance. Pure."""
from __future__ import annotations

from typing import Any

from schemas.records import content_id
from transforms.extract.policies import ExtractionConfig, Rejection, extract_code
from transforms.extract.reasons import BAD_RECORD, NOT_UTF8
from transforms.extract.whitespace import normalized_code_key, normalized_code_key_of_normalized

STAGE = "extract"


def snippet_id(language: str, code: str) -> str:
    """The content id of a snippet: equal for code that differs only in whitespace (exact dedup keys on it)."""
    return content_id("code_snippet", language, normalized_code_key(code, language))


def _normalized_snippet_id(language: str, code: str) -> str:
    """``snippet_id`` of code already normalized (every ``Extracted.code`` is)."""
    return content_id("code_snippet", language, normalized_code_key_of_normalized(code, language))


def as_occurrence(snippet: dict[str, Any]) -> dict[str, Any]:
    """``snippet`` keyed by where it was found as well as by its code, for jobs without exact dedup: there, two
    rows with the same code are two snippets, and every later join (candidates, scores, selection) keys on ``id``,
    so equal ids would merge or lose them. Stable: the same row of the same source gives the same id."""
    occurrence = content_id("code_snippet_occurrence", snippet["id"], snippet["source_uri"], snippet["source_row"],
                            snippet["source_id"])
    return {**snippet, "id": occurrence}


def snippet_from_pair(pair: Any, config: ExtractionConfig) -> dict[str, Any] | tuple[str, str]:
    """A CODE_SNIPPET for ``pair``, or ``(reason, detail)`` when its response yields no usable code."""
    if not isinstance(pair, dict):
        return BAD_RECORD, f"a {type(pair).__name__}, not a record"
    instruction = pair.get("instruction")
    if isinstance(instruction, (bytes, bytearray)):  # a binary Parquet column
        try:
            instruction = bytes(instruction).decode("utf-8")
        except UnicodeDecodeError as exc:
            return NOT_UTF8, f"instruction bytes are not UTF-8: {exc.reason} at byte {exc.start}"
    elif instruction is not None and not isinstance(instruction, str):
        return BAD_RECORD, f"instruction is {type(instruction).__name__}, not text or null"
    result = extract_code(pair.get("response"), config, language_hint=pair.get("language_hint"))
    if isinstance(result, Rejection):
        return result.reason, result.detail
    return {
        "id": _normalized_snippet_id(result.language, result.code),
        "source_id": pair["id"],
        "code": result.code,
        "language": result.language,
        "fence_lang": result.fence_lang,
        "reference_snippet": result.reference_snippet or None,
        "original_instruction": instruction,
        "extraction_policy": config.policy,
        "n_lines": result.code.count("\n") + 1,
        "n_chars": len(result.code),
        "source_uri": pair.get("source_uri", ""),
        "source_row": pair.get("source_row", -1),
        "stage": STAGE,
    }
