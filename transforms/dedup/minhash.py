"""Near-duplicate detection with MinHash LSH (pure logic; ``beam.NearDedup`` distributes it).

Peer-standard defaults (bigcode / text-dedup): word 5-grams, 256 permutations, Jaccard threshold 0.7.
The number of bands and rows per band comes from datasketch's own optimizer for that threshold
(``datasketch.lsh._optimal_param``: equal weight on false positives and false negatives; 25 bands x 10
rows for the defaults), unless given.

Pipeline (each step is one Beam transform in ``beam.py``):

1. ``MinHasher.signature``: datasketch ``MinHash`` over the word 5-grams of the configured columns.
2. ``band_keys``: one key per band (band index + hash of that band's rows). Records sharing a key are
   candidates.
3. Candidate pairs of each bucket are verified: a pair is an edge only if the estimated Jaccard of the two
   signatures reaches the threshold (LSH alone lets through pairs well below it).
4. ``connected_components`` over the edges (union-find). The **survivor** of each cluster is the record
   with the smallest ``id`` (a content hash, so the choice depends only on the data: not on input order,
   bundling, sharding or runner); every other member is rejected as ``near_duplicate`` with the survivor's
   id in its evidence. Clustering is transitive: if A~B and B~C, C is removed even when A and C are below
   the threshold (the standard single-linkage behaviour of bigcode/text-dedup).

Scaling: signatures, buckets and verification are distributed. Components are computed in one place over
the *edges only*, so memory grows with the number of near-duplicate pairs, not with the dataset.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_WORD_RE = re.compile(r"\w+")


@dataclasses.dataclass(frozen=True)
class NearDedupConfig:
    columns: tuple[str, ...] = ("instruction", "response")
    ngram: int = 5
    num_perm: int = 256
    threshold: float = 0.7
    bands: int | None = None  # with rows: override datasketch's optimal (bands, rows)
    rows: int | None = None
    seed: int = 42
    id_column: str = "id"
    max_bucket_pairs: int = 1000  # a bucket bigger than this is linked as a star around its smallest id

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError("near-dedup threshold must be in (0, 1]")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows ({self.bands}*{self.rows}) exceeds num_perm ({self.num_perm})")

    def lsh_params(self) -> tuple[int, int]:
        if self.bands is not None:
            return self.bands, self.rows
        from datasketch.lsh import _optimal_param

        return _optimal_param(self.threshold, self.num_perm, 0.5, 0.5)


def shingles(text: str, n: int) -> set[str]:
    """Lower-cased word n-grams; a text shorter than n words is one shingle (so short duplicates still meet)."""
    words = _WORD_RE.findall(text.lower())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def record_text(record: Mapping[str, Any], columns: Sequence[str]) -> str:
    return "\n\n".join(str(record.get(c) or "") for c in columns)


class MinHasher:
    """datasketch MinHash with the permutations drawn once (they are the expensive part of construction)."""

    def __init__(self, num_perm: int, seed: int, ngram: int) -> None:
        from datasketch import MinHash

        self.num_perm, self.seed, self.ngram = num_perm, seed, ngram
        self._template = MinHash(num_perm=num_perm, seed=seed)

    def signature(self, text: str) -> np.ndarray:
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, seed=self.seed, permutations=self._template.permutations,
                    scheme=self._template.scheme)
        grams = shingles(text, self.ngram)
        if grams:
            m.update_batch([g.encode("utf-8", "surrogatepass") for g in grams])
        return np.asarray(m.hashvalues).copy()


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a == b)) / a.size


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """One bucket key per band: band index + 8-byte hash of its rows."""
    keys = []
    for b in range(bands):
        digest = hashlib.blake2b(signature[b * rows:(b + 1) * rows].tobytes(), digest_size=8).digest()
        keys.append(b.to_bytes(2, "little") + digest)
    return keys


def bucket_pairs(ids: Iterable[str], max_pairs: int) -> list[tuple[str, str]]:
    """Candidate pairs of one bucket: all pairs, or a star around the smallest id for huge buckets."""
    members = sorted(set(ids))
    if len(members) < 2:
        return []
    if len(members) * (len(members) - 1) // 2 > max_pairs:
        return [(members[0], other) for other in members[1:]]
    return [(a, b) for i, a in enumerate(members) for b in members[i + 1:]]


def connected_components(edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Union-find; maps every id that has an edge to the smallest id of its component."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in edges:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo  # the root is always the smallest id seen in the component
    return {x: find(x) for x in parent}


def duplicates_to_remove(edges: Iterable[tuple[str, str]]) -> dict[str, tuple[str, int]]:
    """{removed id: (survivor id, cluster size)} for every non-survivor member of every cluster."""
    roots = connected_components(edges)
    sizes: dict[str, int] = {}
    for root in roots.values():
        sizes[root] = sizes.get(root, 0) + 1
    return {x: (root, sizes[root]) for x, root in roots.items() if x != root}


def near_dedup(records: Sequence[Mapping[str, Any]], config: NearDedupConfig = NearDedupConfig()
               ) -> tuple[list[Mapping[str, Any]], dict[str, tuple[str, int]]]:
    """In-memory reference implementation (same steps as the Beam transform): (kept, removed)."""
    hasher = MinHasher(config.num_perm, config.seed, config.ngram)
    bands, rows = config.lsh_params()
    sigs = {}
    buckets: dict[bytes, list[str]] = {}
    for r in records:
        rid = r[config.id_column]
        sigs[rid] = hasher.signature(record_text(r, config.columns))
        for key in band_keys(sigs[rid], bands, rows):
            buckets.setdefault(key, []).append(rid)
    pairs = {p for ids in buckets.values() for p in bucket_pairs(ids, config.max_bucket_pairs)}
    edges = [(a, b) for a, b in sorted(pairs) if jaccard(sigs[a], sigs[b]) >= config.threshold]
    removed = duplicates_to_remove(edges)
    return [r for r in records if r[config.id_column] not in removed], removed
