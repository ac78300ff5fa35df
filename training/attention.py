"""Which attention kernel a training run uses (``attention``): transformers' ``sdpa`` unless the config says otherwise.

On CPU, PyTorch's fused ``scaled_dot_product_attention`` (transformers' ``sdpa``) runs the flash-attention kernel,
which pays for itself only on long rows. Forward + backward of one layer's attention alone, bf16, 2 threads,
about 2,048 tokens per call, on the AMX Xeon (2026-12-05), transformers' ``eager`` (matmul, softmax, matmul)
against ``sdpa``: compiled, 64 tokens per row 5.8 ms vs 25.6 ms, 128: 13.0 vs 29.4, 192: 13.9 vs 18.7,
256: 11.4 vs 21.9, 384: 31.3 vs 22.9, 512: 49.5 vs 28.7; uncompiled, 128: 14.5 vs 29.1, 192: 21.1 vs 18.1,
256: 32.4 vs 21.2. Code Alpaca's rows are short (median 103 tokens, 90% under 192), so ``length_aware`` takes
the matmul path up to ``COMPILED_SHORT_ROWS_MAX`` tokens per row in compiled layers and ``EAGER_SHORT_ROWS_MAX``
in eager ones, and sdpa above. The mask is sdpa's (boolean, or none where causality alone suffices); the matmul
path turns it into the additive mask it adds.

In whole training steps, runs of one setting against runs of the other (each its own process) disagreed from one
hour to the next on the noisy host (0.96x to 1.13x). Inside one Trainer run that alternates the two paths per
optimizer step, in a crossover of two runs (``bench/train_attention_crossover.py``, README), compiled layers at
global batch 32 gave ``length_aware`` 1.08x and 1.14x sdpa's tokens per CPU-second at micro-batch 16 (two clean
pairs of runs) and 1.13x at micro-batch 4, and 1.04x at the bench's global batch of 8. So ``auto`` takes
``length_aware`` where the layers are compiled on a CPU, and transformers' ``sdpa`` elsewhere (eager layers and
CUDA were not measured that way; CUDA's sdpa is a fused GPU kernel).
"""
from __future__ import annotations

import dataclasses

ATTENTIONS = ("auto", "sdpa", "eager", "length_aware")
LENGTH_AWARE = "length_aware"
# Longest row (query length) the matmul path takes: under the crossovers measured above (256-384 compiled,
# 128-192 eager).
COMPILED_SHORT_ROWS_MAX = 256
EAGER_SHORT_ROWS_MAX = 128
# A packed micro-batch's attention blocks hold at most 4 rows (training.packing.BLOCK_ROWS) and run eagerly. One
# layer's forward + backward alone, bf16, 2 threads (2026-12-06, AMX Xeon), matmul path against sdpa: blocks of 4
# rows, 130 tokens 5.1 vs 11.1 ms, 200: 9.4 vs 12.6, 300: 17.9 vs 20.9, 450: 43.1 vs 38.7; one row, 300: 6.3 vs
# 7.6, 450: 11.0 vs 13.9, 700: 24.2 vs 23.9. Whole steps at 300 against 128 (single runs alternating, two each
# at global batch 8 and 32): 1.04-1.06x.
PACKED_SHORT_ROWS_MAX = 300


@dataclasses.dataclass(frozen=True)
class AttentionChoice:
    implementation: str  # what transformers' ``attn_implementation`` gets
    reason: str


def require_attention(setting: object) -> None:
    if setting not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {setting!r}")


def choose_attention(setting: str, *, compiled: bool, cuda: bool) -> AttentionChoice:
    """``setting`` as named; ``auto``: ``length_aware`` in compiled layers on a CPU, else transformers' sdpa."""
    require_attention(setting)
    if setting != "auto":
        return AttentionChoice(setting, f"attention: {setting}")
    if cuda:
        return AttentionChoice("sdpa", "auto: transformers' sdpa on CUDA")
    if not compiled:
        return AttentionChoice("sdpa", "auto: transformers' sdpa in eager layers (length_aware measured with "
                                       "compiled layers only)")
    return AttentionChoice(LENGTH_AWARE, "auto: length_aware in compiled CPU layers (1.04-1.14x sdpa's tokens per "
                                         "CPU-second, Trainer crossover)")


def takes_matmul_path(query_length: int, compiled: bool) -> bool:
    return query_length <= (COMPILED_SHORT_ROWS_MAX if compiled else EAGER_SHORT_ROWS_MAX)


def additive_mask(attention_mask, query, key):
    """sdpa's mask (True: attend; None: causal alone) as the float mask eager attention adds to its scores."""
    import torch

    if attention_mask is None:
        q_length, kv_length = query.shape[2], key.shape[2]
        attention_mask = torch.ones(q_length, kv_length, dtype=torch.bool, device=query.device).tril(
            kv_length - q_length)[None, None]
    if attention_mask.dtype != torch.bool:
        return attention_mask
    blocked = torch.finfo(query.dtype).min
    return torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device).masked_fill(~attention_mask,
                                                                                                 blocked)


def length_aware_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' eager attention for short rows, its sdpa attention for long ones (``takes_matmul_path``)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward

    if takes_matmul_path(query.shape[2], torch.compiler.is_compiling()):
        return eager_attention_forward(module, query, key, value, additive_mask(attention_mask, query, key), **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def switchable_attention(path_of):
    """For benches that switch kernels inside one process: runs ``length_aware_attention`` when ``path_of()`` is
    "length_aware" and transformers' sdpa otherwise. Install it as ``length_aware_attention`` before
    ``register_length_aware``; dynamo guards on what ``path_of()`` returns, so each path gets its own graphs."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    own = length_aware_attention

    def attention(module, query, key, value, attention_mask, **kwargs):
        forward = own if path_of() == LENGTH_AWARE else sdpa_attention_forward
        return forward(module, query, key, value, attention_mask, **kwargs)

    return attention


def register_length_aware() -> None:
    """Make ``attn_implementation="length_aware"`` known to transformers, with sdpa's masks (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(LENGTH_AWARE, length_aware_attention)
    AttentionMaskInterface.register(LENGTH_AWARE, sdpa_mask)


# --------------------------------------------------------------------------- packed rows (training.packing)

PACKED_PREFIX = "packed_"
PACKABLE = ("sdpa", "eager", LENGTH_AWARE)


def packed_implementation(inner: str) -> str:
    """The ``attn_implementation`` that runs ``inner`` per row of a packed micro-batch."""
    if inner not in PACKABLE:
        raise ValueError(f"pack_rows runs the attention kernels {PACKABLE}, not {inner!r}")
    return PACKED_PREFIX + inner


def inner_of(implementation: str) -> str | None:
    """The kernel a packed implementation runs per row; None for any other implementation."""
    if implementation.startswith(PACKED_PREFIX) and implementation[len(PACKED_PREFIX):] in PACKABLE:
        return implementation[len(PACKED_PREFIX):]
    return None


def packed_long_row_min(implementation: str) -> int | None:
    """Rows this long or longer take sdpa in a packed micro-batch, in blocks of their own; None: one kernel for
    every row. Only ``length_aware`` splits, past ``PACKED_SHORT_ROWS_MAX``, its matmul path's bound in packed blocks
    (which run eagerly, outside the compiled layers: ``packed_attention``)."""
    if inner_of(implementation) != LENGTH_AWARE:
        return None
    return PACKED_SHORT_ROWS_MAX + 1


def _attend_rows(inner: str, module, query, key, value, kwargs):
    """Causal attention of right-padded rows ``(rows, heads, width, dim)``; the output ``(rows, width, heads, dim)``.
    Causality alone is the mask: a real query never reaches a padded key, and padded queries are dropped."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward

    if inner == "eager" or (inner == LENGTH_AWARE and query.shape[2] <= PACKED_SHORT_ROWS_MAX):
        return eager_attention_forward(module, query, key, value, additive_mask(None, query, key), **kwargs)[0]
    return sdpa_attention_forward(module, query, key, value, None, **kwargs)[0]


def packed_attention(inner: str):
    """The attention of ``packed_implementation(inner)``: reads ``training.packing``'s blocks and order. It runs
    eagerly, outside compiled layers (``torch.compiler.disable``): traced, every block's attention was compiled into
    the layers' graph, and each new number of blocks or kernel mix compiled another (42 and 43 CPU-seconds in the
    first two steps at micro-batch 16, against 16 and 14 eager here, at the same steady rate: README)."""
    import torch

    from training.packing import PACKED_BLOCK_SHAPES, PACKED_ORDER, PACKED_SLOTS, from_blocks, to_blocks

    def attention(module, query, key, value, attention_mask, **kwargs):
        slots, shapes = kwargs.pop(PACKED_SLOTS, None), kwargs.pop(PACKED_BLOCK_SHAPES, None)
        order = kwargs.pop(PACKED_ORDER, None)
        if order is None or slots is None or shapes is None or not len(shapes) or query.shape[0] != 1:
            raise ValueError(f"attention {PACKED_PREFIX}{inner} runs packed micro-batches only "
                             "(training.packing.packed_micro_batch's arguments)")
        sizes = [(int(rows), int(width)) for rows, width in shapes.tolist()]  # each block's (rows, width)
        window = kwargs.get("sliding_window")
        if window is not None and max(width for _, width in sizes) > window:
            # Causality alone is the packed kernels' mask: a row longer than the window would see past it.
            raise ValueError(f"pack_rows: a row is longer than the model's sliding window ({window} tokens); "
                             "set pack_rows: false")
        # q, k, v gathered into every block's slots at once, then split: (heads, slots, dim) -> per block
        blocked = [to_blocks(states[0], slots, order).split([rows * width for rows, width in sizes], dim=1)
                   for states in (query, key, value)]
        outputs = [_attend_rows(inner, module, *(part.unflatten(1, size).transpose(0, 1) for part in parts),
                                kwargs).flatten(0, 1)
                   for size, *parts in zip(sizes, *blocked, strict=True)]
        return from_blocks(torch.cat(outputs), slots, order)[None], None

    return torch.compiler.disable(attention)


def _no_mask(*args, **kwargs):
    """The packed kernels build no mask from transformers' (causality per row is theirs)."""
    return None


def register_attention(implementation: str | None) -> None:
    """Make the project's implementations known to transformers before a model is loaded with one (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    if implementation == LENGTH_AWARE:
        register_length_aware()
    inner = inner_of(implementation or "")
    if inner is not None:
        AttentionInterface.register(implementation, packed_attention(inner))
        AttentionMaskInterface.register(implementation, _no_mask)
