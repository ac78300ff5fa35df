"""Deduplication: exact dedup of snippets by normalized-code id (``exact``) and MinHash-LSH near-dedup of
generated pairs (``minhash``); options in ``options``, Beam transforms in ``beam``."""
