"""Input and output: filesystems (Beam first, fsspec for other schemes), corpus readers (Parquet, JSON, JSONL,
source trees), atomic bounded Parquet output with a ``shards.json`` index, and training examples and shards.

Pure modules: ``filesystems``, ``readers``, ``source_tree``, ``parquet``, ``training_examples``; options in
``options``; Beam transforms in ``beam``.
"""
