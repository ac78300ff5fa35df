"""A micro-batch as one packed row (``pack_rows``): every per-token layer sees all its real tokens at once.

The unpadded groups (``finetune.unpadded_groups``) run a micro-batch of rows of different lengths as several
forwards of one or two rows each at the default micro-batch of 4: every group's matmuls are small, and each
layer's weights are cast to bf16 and its weight gradients summed once per group. Packed, the micro-batch's real
tokens are concatenated into one row: the linear layers, norms, MLP and LM head run one matmul per weight over
every real token, with no padding at all, and the rotary embedding reads each token's own position (0..n-1 per
row, ``position_ids``).

Only attention must not cross rows. ``training.attention``'s packed kernels gather each row's queries, keys and
values back into padded ``(rows, width)`` blocks, attend per block with causality alone (right padding: no real
query reaches a padded key), and scatter the real positions back into packed order; the padding costs only
attention. A block holds at most ``BLOCK_ROWS`` rows, consecutive in length order, and rows long enough for another
kernel (``long_row_min``: sdpa rather than ``length_aware``'s matmul path) never share a block with shorter ones, so
one long row does not pad the short ones to its length.

A row's tokens, positions and causal attention are the same packed as padded, so the per-token losses are too:
the label of each row's first token is ignored (in the padded batch nothing predicts it; packed, the previous
row's last token would).
"""
from __future__ import annotations

import torch

from training.data import IGNORE_INDEX

# The keyword arguments the packed attention kernels read (training.attention.packed_attention). The blocks are two
# tensors (every block's slots, flat, and each block's shape), not a tuple of one tensor per block: dynamo guards on
# a tuple's length, so every new number of blocks recompiled the layers (and past its recompile limit, 8, would have
# left them eager for the rest of the run).
PACKED_SLOTS, PACKED_BLOCK_SHAPES, PACKED_ORDER = "packed_slots", "packed_block_shapes", "packed_order"
# Rows per attention block: consecutive rows in length order share a block, padded to its longest row.
BLOCK_ROWS = 4


def _row_lengths(attention_mask: torch.Tensor) -> list[int]:
    """Each row's real length; refuses a mask that is not right-padded (real tokens first, then padding)."""
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    right_padded = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(mask, right_padded):
        raise ValueError("pack_rows needs right-padded micro-batches (each row's real tokens first)")
    if not bool((lengths > 0).all()):
        raise ValueError("pack_rows: a row of the micro-batch has no real token")
    return [int(n) for n in lengths.tolist()]


def _slots(rows: list[int], lengths: list[int], starts: list[int], total: int) -> torch.Tensor:
    """``(len(rows), width)`` packed index of each row's positions; ``total`` (a zero row) past a row's end."""
    width = max(lengths[r] for r in rows)
    slots = torch.full((len(rows), width), total, dtype=torch.long)
    for i, r in enumerate(rows):
        slots[i, :lengths[r]] = torch.arange(starts[r], starts[r] + lengths[r])
    return slots


def attention_blocks(lengths: list[int], long_row_min: int | None, block_rows: int = BLOCK_ROWS) -> list[list[int]]:
    """The rows (indices into ``lengths``) of each attention block: longest first, at most ``block_rows`` rows
    each, rows from ``long_row_min`` on never sharing a block with shorter ones (they take another kernel)."""
    def long(r: int) -> bool:
        return long_row_min is not None and lengths[r] >= long_row_min

    blocks: list[list[int]] = []
    for r in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if blocks and len(blocks[-1]) < block_rows and long(blocks[-1][0]) == long(r):
            blocks[-1].append(r)
        else:
            blocks.append([r])
    return blocks


class _ToBlocks(torch.autograd.Function):
    """``(heads, tokens, dim)`` packed states to ``(heads, slots, dim)``, the blocks' slots in turn (index ``tokens``:
    a zero row). Each token fills exactly one slot, at ``order[token]``, so the gradient is a gather too
    (``order``), where autograd's own backward of an index would scatter-add (8.7% of a step's CPU, torch.profiler,
    micro-batch 16)."""

    @staticmethod
    def forward(ctx, states, slots, order):
        ctx.save_for_backward(order)
        zero = states.new_zeros(states.shape[0], 1, states.shape[2])
        return torch.cat([states, zero], dim=1).index_select(1, slots)

    @staticmethod
    def backward(ctx, grad):
        (order,) = ctx.saved_tensors
        return grad.index_select(1, order), None, None


class _FromBlocks(torch.autograd.Function):
    """The blocks' ``(slots, heads, dim)`` outputs back to packed ``(tokens, heads, dim)``; the gradient gathers
    each slot's token (zero for a padding slot) instead of scattering."""

    @staticmethod
    def forward(ctx, outputs, slots, order):
        ctx.save_for_backward(slots)
        return outputs.index_select(0, order)

    @staticmethod
    def backward(ctx, grad):
        (slots,) = ctx.saved_tensors
        zero = grad.new_zeros(1, *grad.shape[1:])
        return torch.cat([grad, zero]).index_select(0, slots), None, None


def to_blocks(states: torch.Tensor, slots: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Packed ``(heads, tokens, dim)`` states at ``slots`` (``PACKED_SLOTS``; ``order``: ``PACKED_ORDER``)."""
    return _ToBlocks.apply(states, slots, order)


def from_blocks(outputs: torch.Tensor, slots: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-slot ``(slots, heads, dim)`` outputs back in packed order ``(tokens, heads, dim)``."""
    return _FromBlocks.apply(outputs, slots, order)


def packed_micro_batch(inputs: dict[str, torch.Tensor], long_row_min: int | None,
                       block_rows: int = BLOCK_ROWS) -> dict[str, torch.Tensor]:
    """The right-padded micro-batch ``inputs`` (``input_ids``, ``attention_mask``, ``labels``) as one packed row.

    Returns ``input_ids``, ``labels`` and ``position_ids`` of shape ``(1, real tokens)`` (rows longest first) and
    the packed kernels' arguments: ``packed_slots`` and ``packed_block_shapes``, the ``(rows, width)`` packed indices
    of each attention block (``attention_blocks``; past a row's end, the index of a zero row), flattened one block
    after another, and each block's ``(rows, width)``; and ``packed_order``, the
    position of each packed token in the kernels' output (the blocks' rows in turn, each flattened with its padding).
    """
    lengths = _row_lengths(inputs["attention_mask"])
    blocks = attention_blocks(lengths, long_row_min, block_rows)
    rows = [r for block in blocks for r in block]
    starts, total = [0] * len(lengths), 0
    for r in rows:
        starts[r], total = total, total + lengths[r]
    labels = inputs["labels"].clone()
    labels[:, 0] = IGNORE_INDEX
    device = inputs["input_ids"].device
    packed = {
        "input_ids": torch.cat([inputs["input_ids"][r, :lengths[r]] for r in rows])[None],
        "labels": torch.cat([labels[r, :lengths[r]] for r in rows])[None],
        "position_ids": torch.cat([torch.arange(lengths[r]) for r in rows])[None].to(device),
    }
    order = torch.empty(total, dtype=torch.long)
    offset, flat_slots, block_shapes = 0, [], []
    for block in blocks:
        slots = _slots(block, lengths, starts, total)
        flat = slots.reshape(-1)
        real = flat < total
        order[flat[real]] = torch.arange(offset, offset + flat.numel())[real]
        offset += flat.numel()
        flat_slots.append(flat)
        block_shapes.append(list(slots.shape))
    shapes = torch.tensor(block_shapes)
    packed[PACKED_SLOTS] = torch.cat(flat_slots).to(device)
    packed[PACKED_BLOCK_SHAPES] = shapes  # stays on the CPU: the eager attention reads it
    # Both pass through the compiled layers' frames to the (eager) attention: their sizes are unbacked so that those
    # frames neither specialize on them (one block, one-row blocks) nor recompile when they change.
    torch._dynamo.decorators.mark_unbacked(packed[PACKED_SLOTS], 0)
    torch._dynamo.decorators.mark_unbacked(shapes, 0)
    packed[PACKED_ORDER] = order.to(device)
    return packed


# auto packs micro-batches of at most this many rows. Tokens per CPU-second, packed against the unpadded groups,
# compiled bf16 layers, 2-core AMX Xeon (bench/train.py --steps 8 --pack-rows on/off, 2026-12-06, single runs;
# README): micro-batch 4 319.3 against 229.9, 16 439.7 against 366.3 (attention eager, in blocks of 4 rows); with
# the attention traced, 8 gave 1.22x in one block and 16 0.93x in one block (every short row padded to the longest).
# 32 was not measured.
PACK_ROWS_MAX_MICRO_BATCH = 16


def choose_pack_rows(setting: bool | str, *, attention: str, cuda: bool, processes: int, fsdp: bool,
                     selected_logits: bool, unpad: bool, micro_batch: int) -> tuple[bool, str]:
    """Whether a stage packs its micro-batches, and why. Packing needs the selected-logits loss, one of the
    packable attention kernels (``training.attention.PACKABLE``) and no FSDP (its hooks are untested with it);
    ``auto`` packs in one process on a CPU where the micro-batches are unpadded and hold at most
    ``PACK_ROWS_MAX_MICRO_BATCH`` rows (measured there: README)."""
    from training.attention import PACKABLE

    if setting is False:
        return False, "pack_rows: false"
    blocker = None
    if not selected_logits:
        blocker = "it needs selected_logits"
    elif attention not in PACKABLE:
        blocker = f"attention {attention!r} has no packed kernel (packable: {', '.join(PACKABLE)})"
    elif fsdp:
        blocker = "FSDP is untested with it"
    if setting is True:
        if blocker:
            raise ValueError(f"pack_rows: true, but {blocker}")
        return True, "pack_rows: true"
    if blocker:
        return False, f"auto: not packed, {blocker}"
    if cuda:
        return False, "auto: not packed on CUDA (not measured there)"
    if processes > 1:
        return False, "auto: not packed under DDP (not measured there)"
    if not unpad:
        return False, "auto: not packed, unpad_max_padding is null (padded micro-batches asked for)"
    if micro_batch > PACK_ROWS_MAX_MICRO_BATCH:
        return False, (f"auto: not packed, micro-batches of {micro_batch} rows (packing measured up to "
                       f"{PACK_ROWS_MAX_MICRO_BATCH})")
    return True, (f"auto: packed (one process on a CPU, micro-batches of at most {PACK_ROWS_MAX_MICRO_BATCH} rows: "
                  "1.2-1.4x the unpadded groups' tokens per CPU-second in single runs)")
