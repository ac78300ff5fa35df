"""StreamlinedAdafactor against transformers' Adafactor: the same parameters and state, step after step."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers.optimization import Adafactor

from training.adafactor import StreamlinedAdafactor

# Every shape class the step treats differently: matrices both ways round, a 3-D tensor (factored over its last
# two dims), vectors (unfactored), and a one-row matrix (its row mean is itself).
SHAPES = [(48, 16), (16, 48), (3, 8, 12), (40,), (1, 24), (7, 1)]
FIXED_LR = {"lr": 5e-3, "scale_parameter": False, "relative_step": False, "warmup_init": False}


def _params(seed: int, dtype=torch.float32) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator).to(dtype)) for shape in SHAPES]


def _run(optimizer_cls, steps: int, grad_scale: float = 1.0, dtype=torch.float32, **kwargs):
    params = _params(0, dtype)
    optimizer = optimizer_cls(params, **{**FIXED_LR, **kwargs})
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p, grad in zip(params, _draw_grads(params, generator, grad_scale)):
            p.grad = grad.to(dtype)
        optimizer.step()
    return params, optimizer


def _draw_grads(params, generator: torch.Generator, grad_scale: float = 1.0) -> list[torch.Tensor]:
    """One step's gradients: mixed magnitude (some entries zero), so the factored estimate and the clip both
    matter."""
    grads = []
    for p in params:
        grad = torch.randn(p.shape, generator=generator) * grad_scale
        grad[torch.rand(p.shape, generator=generator) < 0.2] = 0.0
        grads.append(grad)
    return grads


def _update_rms(grad: torch.Tensor) -> float:
    """The first step's update RMS, straight from the paper's definition: grad / sqrt(factored mean of grad**2)."""
    sq = grad.double() ** 2 + 1e-30
    if grad.dim() < 2:
        update = grad.double() / sq.sqrt()
    else:
        row, col = sq.mean(dim=-1, keepdim=True), sq.mean(dim=-2, keepdim=True)
        update = grad.double() / (row * col / row.mean(dim=-2, keepdim=True)).sqrt()
    return float(update.pow(2).mean().sqrt())


@pytest.mark.parametrize("clip_threshold", [1.0, 0.3, 50.0])
def test_parameters_and_state_match_transformers_over_steps(clip_threshold):
    reference, reference_opt = _run(Adafactor, steps=6, clip_threshold=clip_threshold)
    streamlined, streamlined_opt = _run(StreamlinedAdafactor, steps=6, clip_threshold=clip_threshold)
    start = _params(0)
    assert reference and len(reference) == len(streamlined) == len(SHAPES)
    for ref, new, before in zip(reference, streamlined, start):
        assert not torch.equal(ref, before)  # the steps moved the parameter
        torch.testing.assert_close(new, ref, rtol=1e-5, atol=1e-6)
        ref_state, new_state = reference_opt.state[ref], streamlined_opt.state[new]
        assert new_state["step"] == ref_state["step"] == 6
        keys = {"exp_avg_sq_row", "exp_avg_sq_col"} if ref.dim() >= 2 else {"exp_avg_sq"}
        assert keys <= set(new_state) and keys <= set(ref_state)
        for key in keys:
            torch.testing.assert_close(new_state[key], ref_state[key], rtol=1e-5, atol=1e-30)


def test_the_clip_is_exercised_and_matches():
    # With clip 0.3 the first step's update is scaled down for every tensor (RMS near 1 by construction); with 50 for
    # none. Both runs above match transformers, so both branches of the clip are covered.
    grads = _draw_grads(_params(0, torch.float32), torch.Generator().manual_seed(1))  # _run's first step's
    assert len(grads) == len(SHAPES)
    assert all(_update_rms(g) > 0.3 for g in grads)
    assert all(_update_rms(g) < 50.0 for g in grads)


def test_tiny_and_huge_gradients_match():
    for scale in (1e-8, 1e4):
        reference, _ = _run(Adafactor, steps=3, grad_scale=scale)
        streamlined, _ = _run(StreamlinedAdafactor, steps=3, grad_scale=scale)
        for ref, new in zip(reference, streamlined):
            torch.testing.assert_close(new, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,dtype", [
    ({"weight_decay": 0.1}, torch.float32),
    ({"beta1": 0.9}, torch.float32),
    ({"scale_parameter": True}, torch.float32),
    ({}, torch.bfloat16),
])
def test_other_settings_take_transformers_step_exactly(kwargs, dtype):
    reference, _ = _run(Adafactor, steps=3, dtype=dtype, **kwargs)
    streamlined, _ = _run(StreamlinedAdafactor, steps=3, dtype=dtype, **kwargs)
    for ref, new in zip(reference, streamlined):
        assert torch.equal(new, ref)


def test_state_dicts_load_either_way():
    """A checkpoint's optimizer state from one implementation resumes in the other (the same keys)."""
    streamlined, streamlined_opt = _run(StreamlinedAdafactor, steps=2)
    params = [torch.nn.Parameter(p.detach().clone()) for p in streamlined]
    resumed = Adafactor(params, **FIXED_LR)
    resumed.load_state_dict(copy.deepcopy(streamlined_opt.state_dict()))  # loading aliases the tensors
    generator = torch.Generator().manual_seed(9)
    grads = [torch.randn(p.shape, generator=generator) for p in params]
    for p, q, g in zip(params, streamlined, grads):
        p.grad, q.grad = g.clone(), g.clone()
    resumed.step()
    streamlined_opt.step()
    assert resumed.state[params[0]]["step"] == 3
    for p, q in zip(params, streamlined):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_the_training_job_builds_it_for_the_recipe_optimizer():
    from transformers import TrainingArguments

    from training import finetune

    trainer_cls = finetune._trainer_classes()[0]
    chosen, kwargs = trainer_cls.get_optimizer_cls_and_kwargs(
        TrainingArguments(output_dir="/tmp/unused", optim="adafactor", use_cpu=True, report_to=[]))
    assert chosen is StreamlinedAdafactor
    assert kwargs["scale_parameter"] is False and kwargs["relative_step"] is False
    other, _ = trainer_cls.get_optimizer_cls_and_kwargs(
        TrainingArguments(output_dir="/tmp/unused", optim="adamw_torch", use_cpu=True, report_to=[]))
    assert other is torch.optim.AdamW
