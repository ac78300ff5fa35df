"""The literal text a regex cannot match without: a substring test that rules a regex out before it runs. Pure.

``required_substrings(pattern)`` reads the pattern's syntax tree (the ``re`` module's own parser) and returns a
set of strings one of which occurs in every text the pattern matches, or None when it cannot tell (a
case-insensitive pattern, or no literal in a mandatory position). ``console\\.(?:log|error)\\(`` needs
``"console."``; ``\\$\\w|<\\?php`` needs ``"$"`` or ``"<?php"``. ``str.__contains__`` is a fast substring search,
while a pattern that starts with ``^[ \\t]*+`` is tried at every position of the text, so most of the language
signals that cannot match are ruled out for a fraction of their cost.
"""
from __future__ import annotations

import re

try:  # the re module's parser (private, stable since 3.11); without it there is no prefilter, only slower
    from re import _constants as _sre
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - other Python versions
    _sre = _sre_parse = None

Requirement = frozenset  # of strings: at least one of them occurs in every match


def _sequence(items) -> list[Requirement]:
    """The requirements of a sequence of pattern items (each must hold)."""
    requirements: list[Requirement] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            requirements.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        end_run()
        if op is _sre.SUBPATTERN:
            _group, add_flags, _del_flags, sub = av
            if not add_flags & _sre.SRE_FLAG_IGNORECASE:
                requirements.extend(_sequence(sub))
        elif op is _sre.ATOMIC_GROUP:
            requirements.extend(_sequence(av))
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
            minimum, _maximum, sub = av
            if minimum >= 1:
                requirements.extend(_sequence(sub))
        elif op is _sre.BRANCH:
            alternatives = [_most_selective(_sequence(branch)) for branch in av[1]]
            if all(alternatives):
                requirements.append(frozenset().union(*alternatives))
        # Anything else (a class, ANY, an anchor, a lookaround, a backreference) requires no literal text.
    end_run()
    return requirements


def _most_selective(requirements: list[Requirement]) -> Requirement | None:
    """The requirement least likely to hold by chance: the longest shortest alternative, then the fewest."""
    if not requirements:
        return None
    return max(requirements, key=lambda alternatives: (min(map(len, alternatives)), -len(alternatives)))


def required_substrings(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Strings one of which occurs in every text ``pattern`` matches, or None when there is no such set."""
    if _sre_parse is None or not isinstance(pattern.pattern, str) or pattern.flags & re.IGNORECASE:
        return None
    try:
        parsed = _sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception:  # an unexpected parser shape: go without the prefilter
        return None
    requirement = _most_selective(_sequence(parsed))
    if requirement is None or "" in requirement:
        return None
    return requirement


def may_match(substrings: frozenset[str] | None, text: str) -> bool:
    """False only when ``text`` holds none of ``substrings`` (so the pattern they came from cannot match)."""
    return substrings is None or any(s in text for s in substrings)
