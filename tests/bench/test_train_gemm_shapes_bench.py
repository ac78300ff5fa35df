"""bench/train_gemm_shapes.py: the step's GEMMs are all measured, and the per-kind mix weights each shape by its
FLOPs (a canned mix with a hand-computed answer)."""
from __future__ import annotations

import pytest

from tests.bench import load_bench


@pytest.fixture
def gemm_bench(monkeypatch):
    return load_bench("train_gemm_shapes.py", monkeypatch)


def test_every_gemm_of_a_linear_layers_step_is_timed_hot_and_cold(gemm_bench):
    found = gemm_bench.measure(rows=256, reps=2, shapes={"tiny": (64, 32), "wide": (32, 96)})
    assert found
    assert {(row["shape"], row["gemm"]) for row in found} == {
        (shape, gemm) for shape in ("tiny", "wide")
        for gemm in ("forward", "grad_input", "grad_weight", "grad_weight_dy_copied", "grad_weight_x_copied",
                     "grad_weight_dy_transposed_compiled")}
    for row in found:
        for when in ("hot", "cold"):
            assert row[when]["wall"] > 0 and row[when]["cpu"] > 0, row


def test_the_mix_is_total_flops_over_total_time(gemm_bench):
    from_shapes = [  # shape a: 2*10*3*2 = 120 FLOPs at 60/s (2 s); shape b: 2*10*6*3 = 360 FLOPs at 90/s (4 s)
        {"gemm": "forward", "rows": 10, "out": 3, "in": 2, "hot": {"wall": 60.0}, "cold": {"wall": 30.0}},
        {"gemm": "forward", "rows": 10, "out": 6, "in": 3, "hot": {"wall": 90.0}, "cold": {"wall": 360.0}},
    ]
    # hot: 480 FLOPs in 2 + 4 = 6 s -> 80; cold: 120/30 + 360/360 = 5 s -> 96
    assert gemm_bench.summary(from_shapes) == {"forward": {"hot": 80.0, "cold": 96.0}}


def test_every_weight_gradient_variant_computes_dy_transposed_times_x(gemm_bench):
    import torch

    generator = torch.Generator().manual_seed(1)
    x, grad_out = torch.randn(48, 16, generator=generator), torch.randn(48, 8, generator=generator)
    expected = torch.einsum("ro,ri->oi", grad_out.double(), x.double()).float()  # independent of the bench's calls
    calls = gemm_bench.step_gemms(x, torch.randn(8, 16, generator=generator), grad_out)
    variants = [kind for kind in calls if kind.startswith("grad_weight")]
    assert len(variants) == 4
    for kind in variants:
        torch.testing.assert_close(calls[kind](), expected, msg=kind)
