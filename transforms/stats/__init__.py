"""Accounting: per-stage records in, out and rejected by reason, counted from the PCollections themselves, and the
``manifest.json`` that proves every record ended in exactly one place."""
