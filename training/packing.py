"""A micro-batch as one packed row (``pack_rows``): every per-token layer sees all its real tokens at once.

The unpadded groups (``finetune.unpadded_groups``) run a micro-batch of rows of different lengths as several
forwards of one or two rows each at the default micro-batch of 4: every group's matmuls are small, and each
layer's weights are cast to bf16 and its weight gradients summed once per group. Packed, the micro-batch's real
tokens are concatenated into one row: the linear layers, norms, MLP and LM head run one matmul per weight over
every real token, with no padding at all, and the rotary embedding reads each token's own position (0..n-1 per
row, ``position_ids``).

Only attention must not cross rows. ``training.attention``'s packed kernels gather each row's queries, keys and
values back into a padded ``(rows, width)`` block, attend per row with causality alone (right padding: no real
query reaches a padded key), and scatter the real positions back into packed order; the padding costs only
attention, and the rows are split by kernel (``long_row_min``): short rows on the matmul path, long ones on sdpa,
so one long row does not pad every short one to its length.

A row's tokens, positions and causal attention are the same packed as padded, so the per-token losses are too:
the label of each row's first token is ignored (in the padded batch nothing predicts it; packed, the previous
row's last token would).
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100
# The keyword arguments the packed attention kernels read (training.attention.packed_attention).
SHORT_SLOTS, LONG_SLOTS, PACKED_ORDER = "packed_short_slots", "packed_long_slots", "packed_order"
PACKED_KEYS = (SHORT_SLOTS, LONG_SLOTS, PACKED_ORDER)


def _row_lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's real length; refuses a mask that is not right-padded (real tokens first, then padding)."""
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    right_padded = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(mask, right_padded):
        raise ValueError("pack_rows needs right-padded micro-batches (each row's real tokens first)")
    if not bool((lengths > 0).all()):
        raise ValueError("pack_rows: a row of the micro-batch has no real token")
    return lengths


def _slots(rows: list[int], lengths: list[int], starts: list[int], total: int) -> torch.Tensor:
    """``(len(rows), width)`` packed index of each row's positions; ``total`` (a zero row) past a row's end."""
    width = max(lengths[r] for r in rows)
    slots = torch.full((len(rows), width), total, dtype=torch.long)
    for i, r in enumerate(rows):
        slots[i, :lengths[r]] = torch.arange(starts[r], starts[r] + lengths[r])
    return slots


def packed_micro_batch(inputs: dict[str, torch.Tensor], long_row_min: int | None) -> dict[str, torch.Tensor]:
    """The right-padded micro-batch ``inputs`` (``input_ids``, ``attention_mask``, ``labels``) as one packed row.

    Returns ``input_ids``, ``labels`` and ``position_ids`` of shape ``(1, real tokens)`` (rows longest first) and
    the packed kernels' arguments: ``packed_short_slots`` and ``packed_long_slots``, the ``(rows, width)`` packed
    indices of the rows shorter than ``long_row_min`` and of the others (None where a kind has no row;
    ``long_row_min`` None: every row is short), and ``packed_order``, the position of each packed token in the
    kernels' output (the short block's rows, then the long block's, each flattened with its padding).
    """
    lengths_t = _row_lengths(inputs["attention_mask"])
    lengths = [int(n) for n in lengths_t.tolist()]
    rows = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    starts, total = [0] * len(lengths), 0
    for r in rows:
        starts[r], total = total, total + lengths[r]
    labels = inputs["labels"].clone()
    labels[:, 0] = IGNORE_INDEX
    packed = {
        "input_ids": torch.cat([inputs["input_ids"][r, :lengths[r]] for r in rows])[None],
        "labels": torch.cat([labels[r, :lengths[r]] for r in rows])[None],
        "position_ids": torch.cat([torch.arange(lengths[r]) for r in rows])[None].to(inputs["input_ids"].device),
    }
    short = [r for r in rows if long_row_min is None or lengths[r] < long_row_min]
    long = [r for r in rows if r not in set(short)]
    order = torch.empty(total, dtype=torch.long)
    offset = 0
    for name, block in ((SHORT_SLOTS, short), (LONG_SLOTS, long)):
        if not block:
            packed[name] = None
            continue
        slots = _slots(block, lengths, starts, total)
        flat = slots.reshape(-1)
        real = flat < total
        order[flat[real]] = torch.arange(offset, offset + flat.numel())[real]
        offset += flat.numel()
        slots = slots.to(inputs["input_ids"].device)
        # A block's row count is often 1 or 2: unbacked, so that compiled layers do not specialize on one row.
        torch._dynamo.decorators.mark_unbacked(slots, 0)
        packed[name] = slots
    packed[PACKED_ORDER] = order.to(inputs["input_ids"].device)
    return packed


# auto packs micro-batches of at most this many rows. Steady tokens per CPU-second, packed against the unpadded
# groups, compiled bf16 layers, 2-core AMX Xeon (bench/train.py --steps 8 --pack-rows on/off, 2026-12-06): micro-
# batch 4 1.13-1.20x, 8 1.22x, 16 0.93x (at 16 the short rows' block pads every row to the longest short one).
PACK_ROWS_MAX_MICRO_BATCH = 8


def choose_pack_rows(setting: bool | str, *, attention: str, cuda: bool, processes: int, fsdp: bool,
                     selected_logits: bool, unpad: bool, micro_batch: int) -> tuple[bool, str]:
    """Whether a stage packs its micro-batches, and why. Packing needs the selected-logits loss, one of the
    packable attention kernels (``training.attention.PACKABLE``) and no FSDP (its hooks are untested with it);
    ``auto`` packs in one process on a CPU where the micro-batches are unpadded and hold at most
    ``PACK_ROWS_MAX_MICRO_BATCH`` rows (measured there: README)."""
    from training.attention import PACKABLE

    if setting is False:
        return False, "pack_rows: false"
    blocker = ("it needs selected_logits" if not selected_logits else
               f"attention {attention!r} has no packed kernel (packable: {', '.join(PACKABLE)})"
               if attention not in PACKABLE else "FSDP is untested with it" if fsdp else None)
    if setting is True:
        if blocker:
            raise ValueError(f"pack_rows: true, but {blocker}")
        return True, "pack_rows: true"
    if blocker:
        return False, f"auto: not packed, {blocker}"
    if cuda or processes > 1 or not unpad or micro_batch > PACK_ROWS_MAX_MICRO_BATCH:
        return False, ("auto: not packed on CUDA (not measured there)" if cuda else
                       "auto: not packed under DDP (not measured there)" if processes > 1 else
                       "auto: not packed, unpad_max_padding is null (padded micro-batches asked for)" if not unpad
                       else f"auto: not packed, micro-batches of {micro_batch} rows (packing measured slower at 16; "
                            f"packs up to {PACK_ROWS_MAX_MICRO_BATCH})")
    return True, (f"auto: packed (one process on a CPU, micro-batches of at most {PACK_ROWS_MAX_MICRO_BATCH} rows: "
                  "1.13-1.22x the unpadded groups' steady tokens per CPU-second)")
