"""Near-dedup on a generated set with known duplicate clusters: precision and recall stated and asserted,
for the in-memory reference and for the Beam transform (which must agree), plus survivor determinism."""
from __future__ import annotations

import json
import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import content_id
from transforms.dedup import minhash as nd
from transforms.dedup.beam import NearDedup, nearest_neighbours

VOCAB = [f"w{i}" for i in range(5000)]


def edit(words: list[str], n_edits: int, rng: random.Random) -> list[str]:
    out = list(words)
    for i in rng.sample(range(len(out)), n_edits):
        out[i] = rng.choice(VOCAB)
    return out


def exact_jaccard(a: list[str], b: list[str]) -> float:
    sa, sb = nd.shingles(" ".join(a), 5), nd.shingles(" ".join(b), 5)
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="session")
def generated():
    """60 clusters of 2-4 near-copies (1-2 substituted words per 120: exact Jaccard of 5-gram shingles to
    the base >= 0.8, checked below), 60 hard negatives (40 substitutions: Jaccard < 0.3 to their base) and
    200 unrelated singletons."""
    rng = random.Random(7)
    records, cluster_of = [], {}

    def add(words, cluster):
        text = " ".join(words)
        rid = content_id("neardedup-test", text)
        records.append({"id": rid, "instruction": text[:200], "response": text[200:]})
        cluster_of[rid] = cluster

    for c in range(60):
        base = [rng.choice(VOCAB) for _ in range(120)]
        add(base, f"c{c}")
        for _ in range(rng.randint(1, 3)):
            copy = edit(base, rng.randint(1, 2), rng)
            assert exact_jaccard(base, copy) >= 0.8
            add(copy, f"c{c}")
        negative = edit(base, 40, rng)
        assert exact_jaccard(base, negative) < 0.3
        add(negative, f"neg{c}")
    for s in range(200):
        add([rng.choice(VOCAB) for _ in range(rng.randint(20, 150))], f"s{s}")
    rng.shuffle(records)
    return records, cluster_of


def expected_removals(cluster_of):
    members = {}
    for rid, c in cluster_of.items():
        members.setdefault(c, []).append(rid)
    return {rid for ids in members.values() for rid in sorted(ids)[1:]}


def precision_recall(removed, truth):
    tp = len(set(removed) & truth)
    return tp / max(1, len(removed)), tp / len(truth)


def test_reference_precision_and_recall(generated, capsys):
    records, cluster_of = generated
    truth = expected_removals(cluster_of)
    kept, removed = nd.near_dedup(records)
    precision, recall = precision_recall(removed, truth)
    with capsys.disabled():
        print(f"\nnear-dedup: {len(records)} records, {len(truth)} true duplicates, removed {len(removed)}, "
              f"precision {precision:.3f} recall {recall:.3f} (bands, rows = {nd.NearDedupConfig().lsh_params()})")
    assert precision >= 0.99 and recall >= 0.95
    # The survivor of every cluster is its smallest id.
    for rid, (survivor, _) in removed.items():
        assert survivor < rid and cluster_of[survivor] == cluster_of[rid]
    assert len(kept) + len(removed) == len(records)


def test_survivors_do_not_depend_on_input_order(generated):
    records, _ = generated
    _, removed = nd.near_dedup(records)
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    assert nd.near_dedup(shuffled)[1] == removed


def test_connected_components_keep_smallest_id():
    assert nd.duplicates_to_remove([("b", "c"), ("c", "d"), ("a", "d"), ("x", "y")]) == {
        "b": ("a", 4), "c": ("a", 4), "d": ("a", 4), "y": ("x", 2)}


def test_default_parameters_are_peer_standard():
    config = nd.NearDedupConfig()
    assert (config.ngram, config.num_perm, config.threshold) == (5, 256, 0.7)
    bands, rows = config.lsh_params()
    assert bands * rows <= 256
    with pytest.raises(ValueError):
        nd.NearDedupConfig(bands=30, rows=10)


def run_beam(records, options=None):
    out = {}
    with beam.Pipeline(runner="DirectRunner", options=options) as p:
        result = p | beam.Create(records) | NearDedup(columns=("instruction", "response"), record_kind="source_pair")
        out["main"] = result.main | "MainIds" >> beam.Map(lambda r: r["id"])
        out["rejected"] = result.rejected
        ids = [r["id"] for r in records]
        _, removed = nd.near_dedup(records)
        assert_that(out["main"], equal_to(sorted(set(ids) - set(removed))), label="KeptAsReference")
        assert_that(
            out["rejected"] | beam.Map(lambda r: (json.loads(r["payload"])["id"], r["reason"],
                                                  json.loads(r["detail"])["survivor_id"])),
            equal_to([(rid, "near_duplicate", survivor) for rid, (survivor, _) in removed.items()]),
            label="RejectedAsReference")


def test_beam_matches_reference(generated):
    records, _ = generated
    run_beam(records)


def test_beam_multiprocess_and_same_id_records(generated):
    from apache_beam.options.pipeline_options import PipelineOptions

    records, _ = generated
    sample = records[:80] + [dict(records[0])]  # an exact repeat shares the id
    options = PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=2)
    with beam.Pipeline(runner="DirectRunner", options=options) as p:
        result = p | beam.Create(sample) | NearDedup(columns=("instruction", "response"), record_kind="source_pair")
        kept = result.main | beam.Map(lambda r: r["id"])
        _, removed = nd.near_dedup(records[:80])
        assert_that(kept, equal_to(sorted({r["id"] for r in records[:80]} - set(removed))), label="Kept")
        assert_that(result.rejected | beam.combiners.Count.Globally(), equal_to([len(removed) + 1]), label="Count")


def test_nearest_neighbour_is_the_most_similar_whatever_the_edge_order():
    # "a" has three verified neighbours; "c" (0.9) is the most similar, "d" ties "c" at 0.9 but has a larger id.
    edges = [("a", "b", 0.8), ("a", "d", 0.9), ("a", "c", 0.9), ("b", "c", 0.85)]
    expected = {"a": ("c", 0.9), "b": ("c", 0.85), "c": ("a", 0.9), "d": ("a", 0.9)}
    assert nearest_neighbours(edges) == expected
    assert nearest_neighbours(list(reversed(edges))) == expected
