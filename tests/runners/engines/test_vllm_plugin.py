"""The ``invariant`` AMX mode's matmul (``vllm_plugin.onednn_mm_in_row_blocks``) against vLLM's own oneDNN matmul on
random weights of SmolLM2-135M's shapes: a row's result must be the one it has alone, whatever the rows around it."""
from __future__ import annotations

import pytest
import torch

from runners.engines.vllm_plugin import (
    CALIBRATION_BUDGET,
    INVARIANT_ROWS,
    _row_blocks_op,
    amx_tiles_usable,
    one_call_sizes,
    one_call_sizes_found,
    onednn_mm_in_row_blocks,
)

# (out_features, in_features): qkv, o_proj, gate_up, down, the tied lm_head.
SMOLLM2_135M_SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536), (49152, 576)]
# Up to 2,100 rows: a prefill step of vLLM's holds up to 4,096 tokens, and sizes of one call (``one_call_sizes``)
# come into play from 64 rows on.
ROW_COUNTS = [1, 5, 31, 32, 33, 64, 100, 257, 600, 1100, 2100]


@pytest.fixture(scope="module")
def ops():
    from vllm import _custom_ops

    if not _custom_ops._supports_onednn:
        pytest.skip("this vLLM build has no oneDNN matmul")
    return _custom_ops


def one_call(handler, x: torch.Tensor) -> torch.Tensor:
    """vLLM's own ``onednn_mm``: all rows in one call (the module's may be this package's, if an engine in this
    process switched it)."""
    out = torch.empty((x.shape[0], handler.n), dtype=x.dtype)
    torch.ops._C.onednn_mm(out, x, None, handler.handler_tensor)
    return out


@pytest.mark.parametrize("shape", SMOLLM2_135M_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_rows_result_does_not_depend_on_its_batch(ops, shape):
    out_features, in_features = shape
    generator = torch.Generator().manual_seed(sum(shape))
    weight = (torch.randn(out_features, in_features, generator=generator) * 0.05).to(torch.bfloat16)
    # The LM head stops at 600 rows: vLLM runs it on one row per sequence (sizes of one call up to 128 rows are
    # tried on it, CALIBRATION_BUDGET), and 2,100 single rows of 49K features are slow to compute one by one.
    counts = [count for count in ROW_COUNTS if count <= 600 or out_features * 2048 <= CALIBRATION_BUDGET]
    rows = torch.randn(max(counts), in_features, generator=generator).to(torch.bfloat16)
    handler = ops.create_onednn_mm(weight.t(), 32)
    alone = torch.cat([one_call(handler, rows[i:i + 1].contiguous()) for i in range(rows.shape[0])])
    unblocked_moved = checked = 0
    for count in counts:
        for _ in range(3):  # three different batches of each size: each row at other positions, among others
            picked = torch.randperm(rows.shape[0], generator=generator)[:count]
            batch = rows[picked].contiguous()
            got = onednn_mm_in_row_blocks(handler, batch, None)
            assert got.shape == (count, out_features)
            differ = (got != alone[picked]).any(dim=1)
            assert not differ.any(), f"{count} rows: rows {differ.nonzero().flatten().tolist()} moved"
            unblocked_moved += int((one_call(handler, batch) != alone[picked]).any(dim=1).sum())
            checked += count
    assert checked == 3 * sum(counts) and len(counts) >= 9
    if amx_tiles_usable():
        # The blocks matter: in one call, AMX rounds some rows otherwise from 33 rows on (if vLLM's kernels stop
        # doing so, the default could drop the blocks; re-measure and say so in the README).
        assert unblocked_moved > 0, "vLLM's own onednn_mm was batch-invariant here"


def test_blocks_keep_leading_dimensions_and_bias(ops):
    generator = torch.Generator().manual_seed(7)
    weight = torch.randn(64, 32, generator=generator).to(torch.bfloat16)
    bias = torch.randn(64, generator=generator).to(torch.bfloat16)
    handler = ops.create_onednn_mm(weight.t(), 32)
    x = torch.randn(3, INVARIANT_ROWS + 5, 32, generator=generator).to(torch.bfloat16)
    got = onednn_mm_in_row_blocks(handler, x, bias)
    assert got.shape == (3, INVARIANT_ROWS + 5, 64)
    reference = x.float() @ weight.float().t() + bias.float()
    assert torch.allclose(got.float(), reference, atol=0.1, rtol=0.02)


def test_compiled_blocks_give_the_eager_blocks_results(ops):
    """Under torch.compile (vLLM's enforce_eager=False) the blocks run as one custom op, with the same results."""
    generator = torch.Generator().manual_seed(11)
    weight = (torch.randn(960, 576, generator=generator) * 0.05).to(torch.bfloat16)
    handler = ops.create_onednn_mm(weight.t(), 32)
    _row_blocks_op()  # as batch_invariant_amx_kernels does before vLLM compiles
    compiled = torch.compile(lambda x: onednn_mm_in_row_blocks(handler, x, None), dynamic=True, fullgraph=True)
    for count in (7, 70, 130):
        x = torch.randn(count, 576, generator=generator).to(torch.bfloat16)
        assert torch.equal(compiled(x), onednn_mm_in_row_blocks(handler, x, None)), count


def test_mlp_shapes_run_large_blocks_in_one_call(ops):
    """The speed of ``invariant`` on prefill steps rests on some sizes of one call rounding as 32-row blocks do
    (measured at 2 threads on this AMX Xeon: 1,024 and 2,048 rows for SmolLM2's MLP shapes); each size kept must
    give the rows of a fresh batch their results alone."""
    if not amx_tiles_usable():
        pytest.skip("without AMX the invariant mode leaves vLLM's kernels alone")
    generator = torch.Generator().manual_seed(3)
    for out_features, in_features in [(3072, 576), (576, 1536)]:
        weight = (torch.randn(out_features, in_features, generator=generator) * 0.05).to(torch.bfloat16)
        handler = ops.create_onednn_mm(weight.t(), 32)
        rows = torch.randn(8, in_features, generator=generator).to(torch.bfloat16)
        sizes = one_call_sizes(rows, None, handler.handler_tensor, out_features)
        assert sizes, f"no size of one call rounds as 32-row blocks for {out_features}x{in_features}"
        assert one_call_sizes_found()[f"{out_features}x{in_features}"] == list(sizes)
        for size in sizes:
            batch = torch.randn(size, in_features, generator=generator).to(torch.bfloat16)
            alone = torch.cat([one_call(handler, batch[i:i + 1].contiguous()) for i in range(size)])
            assert torch.equal(one_call(handler, batch), alone), size
