"""Stage 1, extraction: one clean, syntax-checked code snippet per (instruction, response) pair.

``languages`` (the language table: grammars, fence tags, extensions, detection signals), ``fences``,
``whitespace``, ``syntax`` (tree-sitter and CPython checks), ``detect`` (language of untagged code),
``policies`` (``paper`` and ``multilang``: ``extract_code``), ``reasons`` (reason codes), ``snippets``
(the CODE_SNIPPET record), ``options`` (``--extraction-policy`` and bounds) and ``beam`` (``ExtractCode``).
"""
