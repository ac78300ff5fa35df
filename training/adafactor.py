"""The recipe's Adafactor step in fewer passes over memory: same update as transformers', same state, same checkpoints.

The recipe runs Adafactor with a fixed learning rate (no relative step, no parameter scaling, no first moment, no
weight decay: ``training.config.OptimizerConfig``). transformers' ``Adafactor.step`` then still spends about 20
passes over each parameter's memory: it materializes ``grad ** 2 + eps``, the full outer product of the row and
column factors, scales the update in place three times, negates it, and takes the norm of the parameter for a
scale it does not use. On the 135M model (134.5M fp32 parameters, 2-core AMX Xeon) that step took 0.63
CPU-seconds, about 6% of an optimizer step at global batch 32 and a fifth at global batch 8.

``StreamlinedAdafactor`` computes the same update in about 10: ``grad ** 2`` once for the row and column means,
the product ``grad * col_factor`` into the same buffer, its row norms for the update's RMS, and one ``addcmul_``
into the parameter (the row factor is never multiplied out): 0.36 CPU-seconds (``bench/train.py
--probe-optimizer``, 2026-12-04, quiet). It equals transformers' update up to float summation order
(``tests/training/test_adafactor.py`` compares parameters and state over several steps on every shape class). Any
other setting (relative step, parameter scaling, ``beta1``, weight decay, bf16/fp16 or sparse tensors) takes
transformers' own step.
"""
from __future__ import annotations

import math

import torch
from transformers.optimization import Adafactor


def _streamlined(group: dict) -> bool:
    """The fixed-lr settings this step implements; anything else takes transformers' path."""
    return (not group["relative_step"] and not group["scale_parameter"] and not group["warmup_init"]
            and group["beta1"] is None and not group["weight_decay"])


class StreamlinedAdafactor(Adafactor):
    """transformers' ``Adafactor`` with a faster step for the recipe's fixed-lr settings (see the module docstring)."""

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not all(_streamlined(group) for group in self.param_groups) or any(
            p.dtype != torch.float32 or p.grad.dtype != torch.float32 or p.grad.is_sparse for p in params
        ):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        grad = p.grad
        state = self.state[p]
        factored = grad.dim() >= 2
        if len(state) == 0:  # the same state as transformers' Adafactor, so checkpoints load in either
            state["step"] = 0
            if factored:
                state["exp_avg_sq_row"] = torch.zeros(grad.shape[:-1], dtype=grad.dtype, device=grad.device)
                state["exp_avg_sq_col"] = torch.zeros(grad.shape[:-2] + grad.shape[-1:], dtype=grad.dtype,
                                                      device=grad.device)
            else:
                state["exp_avg_sq"] = torch.zeros_like(grad)
            state["RMS"] = 0
        state["step"] += 1
        beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
        eps = group["eps"][0]
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            # mean over a dim of (grad ** 2 + eps) = mean of grad ** 2 + eps (a column norm, vector_norm(dim=-2),
            # is 30x slower than squaring on CPU)
            scaled = grad.square()
            row.mul_(beta2t).add_(scaled.mean(dim=-1).add_(eps), alpha=1.0 - beta2t)
            col.mul_(beta2t).add_(scaled.mean(dim=-2).add_(eps), alpha=1.0 - beta2t)
            row_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            torch.mul(grad, col.rsqrt().unsqueeze(-2), out=scaled)  # update = scaled * row_factor, not materialized
            sum_sq = (torch.linalg.vector_norm(scaled, dim=-1).square_() * row_factor.squeeze(-1).square()).sum()
        else:
            sq = state["exp_avg_sq"]
            sq.mul_(beta2t).add_(grad.square().add_(eps), alpha=1.0 - beta2t)
            scaled = sq.rsqrt().mul_(grad)
            row_factor = None
            sum_sq = scaled.square().sum()
        rms = math.sqrt(float(sum_sq) / grad.numel())
        step_size = group["lr"] / max(1.0, rms / group["clip_threshold"])
        if row_factor is None:
            p.add_(scaled, alpha=-step_size)
        else:
            p.addcmul_(scaled, row_factor, value=-step_size)
