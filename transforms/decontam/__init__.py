"""Benchmark decontamination (substring / n-gram / signature / MinHash) and near-duplicate removal,
as Beam transforms."""
