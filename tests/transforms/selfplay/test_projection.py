import pytest

from transforms.selfplay.projection import (
    GPT_NEO_2_7B,
    GPT_NEO_125M,
    Hardware,
    ModelShape,
    RoundPlan,
    TokenShape,
    decode_tokens_per_s,
    measure_token_shape,
    project_round,
)

SHAPE = TokenShape("made-up", generation_prompt=1000, generation_k=10, solve_prefix=100, solve_prompt=300,
                   test_prompt=300, training_example=200)


def test_decode_rate_is_the_least_of_compute_bandwidth_and_the_cap():
    hw = Hardware(peak_flops=1e15, hbm_bytes_per_s=1e12, decode_mfu=0.5, bandwidth_efficiency=0.5)
    model = ModelShape("m", params=1e9, layers=10, hidden=1000, scheduler_cap_tokens_per_s=1e9)
    # compute: 0.5e15 / 2e9 = 250k; KV: 2*10*1000*2 = 40 kB per token of context, 100 tokens -> 4 MB -> 125k
    assert decode_tokens_per_s(model, hw, mean_context=100) == pytest.approx(125_000)
    assert decode_tokens_per_s(model, hw, mean_context=1) == pytest.approx(250_000)
    capped = ModelShape("m", 1e9, 10, 1000, scheduler_cap_tokens_per_s=1000)
    assert decode_tokens_per_s(capped, hw, mean_context=1) == 1000


def test_round_counts_tokens_per_prompt_and_per_sample():
    phases = project_round(SHAPE, GPT_NEO_125M, RoundPlan(generated_puzzles=6400, kept_fraction=0.5))
    assert phases["generate"]["prompt_tokens"] == 100 * 1000  # 6400 / 64 prompts
    assert phases["generate"]["new_tokens"] == 6400 * 200
    assert phases["solve"]["prompt_tokens"] == 3200 * 300 and phases["solve"]["new_tokens"] == 3200 * 128 * 150
    assert phases["evaluate"]["new_tokens"] == 228 * 100 * 150
    assert phases["fine_tune"]["train_tokens"] == 1_000_000 * 200
    parts = [v["gpu_hours"] for k, v in phases.items() if k != "total"]
    assert phases["total"]["gpu_hours"] == pytest.approx(sum(parts)) and all(p > 0 for p in parts)


def test_the_bigger_model_costs_more():
    small, big = project_round(SHAPE, GPT_NEO_125M), project_round(SHAPE, GPT_NEO_2_7B)
    assert big["total"]["gpu_hours"] > small["total"]["gpu_hours"]


def test_measured_shape_on_real_p3_with_a_character_count(p3_data):
    shape = measure_token_shape(p3_data, len, "chars", prompts=3)
    assert shape.generation_prompt < 2048 - 200 and shape.generation_k >= 1
    assert shape.solve_prefix < shape.solve_prompt and shape.training_example > 0
