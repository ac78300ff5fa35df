"""training.packing: a micro-batch packed into one row (its layout written out by hand here), the packed attention
kernels giving the padded micro-batch's loss and gradients, and when a stage packs."""
from __future__ import annotations

import pytest
import torch

from training import attention
from training.config import StageConfig, TrainConfig, TrainConfigError
from training.packing import (
    PACKED_BLOCK_SHAPES,
    PACKED_ORDER,
    PACKED_SLOTS,
    attention_blocks,
    choose_pack_rows,
    from_blocks,
    packed_micro_batch,
    to_blocks,
)

IGNORE = -100


def _blocks(packed) -> list[torch.Tensor]:
    """Each attention block's ``(rows, width)`` slots, from the flat slots and the blocks' shapes."""
    sizes = [(rows, width) for rows, width in packed[PACKED_BLOCK_SHAPES].tolist()]
    flat = packed[PACKED_SLOTS].split([rows * width for rows, width in sizes])
    return [block.view(rows, width) for block, (rows, width) in zip(flat, sizes, strict=True)]


def _batch():
    """Three right-padded rows of lengths 3, 5 and 2 (pad id 0), labels -100 on some prompt positions."""
    input_ids = torch.tensor([[11, 12, 13, 0, 0], [21, 22, 23, 24, 25], [31, 32, 0, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    labels = torch.tensor([[IGNORE, 12, 13, IGNORE, IGNORE], [IGNORE, IGNORE, 23, 24, 25], [31, 32, IGNORE, IGNORE,
                                                                                              IGNORE]])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def test_one_block_layout_longest_row_first():
    packed = packed_micro_batch(_batch(), long_row_min=None)
    assert packed["input_ids"].tolist() == [[21, 22, 23, 24, 25, 11, 12, 13, 31, 32]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1]]
    # each row's first label is ignored (packed, the row before would predict it); row 2's 31 was a label
    assert packed["labels"].tolist() == [[IGNORE, IGNORE, 23, 24, 25, IGNORE, 12, 13, IGNORE, 32]]
    (slots,) = _blocks(packed)
    assert slots.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 10, 10], [8, 9, 10, 10, 10]]  # 10: the zero row
    assert packed[PACKED_ORDER].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]


def test_blocks_of_two_rows():
    packed = packed_micro_batch(_batch(), long_row_min=None, block_rows=2)
    assert [b.tolist() for b in _blocks(packed)] == [[[0, 1, 2, 3, 4], [5, 6, 7, 10, 10]], [[8, 9]]]
    # the first block's 10 slots come first in the kernels' output, then the second block's 2
    assert packed[PACKED_ORDER].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]
    packed = packed_micro_batch(_batch(), long_row_min=4)  # row 1 (5 tokens) is long: a block of its own
    assert [b.tolist() for b in _blocks(packed)] == [[[0, 1, 2, 3, 4]], [[5, 6, 7], [8, 9, 10]]]
    assert packed[PACKED_ORDER].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_the_block_gathers_gradients_are_autograds():
    """to_blocks and from_blocks compute their gradients as gathers (each token fills one slot); they must equal
    what autograd derives for the plain indexing, padding slots included (blocks of 2 rows: 3 padding slots)."""
    packed = packed_micro_batch(_batch(), long_row_min=None, block_rows=2)
    slots, order = packed[PACKED_SLOTS], packed[PACKED_ORDER]
    tokens = packed["input_ids"].shape[1]
    assert slots.numel() > tokens  # some slots are padding
    states = torch.randn(3, tokens, 2, dtype=torch.float64, requires_grad=True)  # (heads, tokens, dim)
    torch.autograd.gradcheck(lambda x: to_blocks(x, slots, order), (states,))
    weights = torch.randn(3, slots.numel(), 2, dtype=torch.float64)
    ours, = torch.autograd.grad((to_blocks(states, slots, order) * weights).sum(), states)
    plain = torch.cat([states, torch.zeros(3, 1, 2, dtype=torch.float64)], dim=1)[:, slots]
    reference, = torch.autograd.grad((plain * weights).sum(), states)
    torch.testing.assert_close(ours, reference)
    outputs = torch.randn(slots.numel(), 3, 2, dtype=torch.float64, requires_grad=True)  # (slots, heads, dim)
    torch.autograd.gradcheck(lambda x: from_blocks(x, slots, order), (outputs,))
    weights = torch.randn(tokens, 3, 2, dtype=torch.float64)
    ours, = torch.autograd.grad((from_blocks(outputs, slots, order) * weights).sum(), outputs)
    reference, = torch.autograd.grad((outputs[order] * weights).sum(), outputs)
    torch.testing.assert_close(ours, reference)
    assert not ours[slots == tokens].any()  # padding slots reach no token


def test_attention_blocks_keep_long_rows_apart_and_at_most_block_rows():
    lengths = [3, 5, 2, 300, 260, 7]
    assert attention_blocks(lengths, 257, block_rows=2) == [[3, 4], [5, 1], [0, 2]]
    assert attention_blocks(lengths, 280, block_rows=4) == [[3], [4, 5, 1, 0], [2]]
    assert attention_blocks(lengths, None, block_rows=4) == [[3, 4, 5, 1], [0, 2]]
    assert attention_blocks(lengths, 2, block_rows=6) == [[3, 4, 5, 1, 0, 2]]  # every row long


def test_left_padding_and_empty_rows_are_refused():
    batch = _batch()
    batch["attention_mask"] = batch["attention_mask"].flip(1)
    with pytest.raises(ValueError, match="right-padded"):
        packed_micro_batch(batch, None)
    batch = _batch()
    batch["attention_mask"][2] = 0
    with pytest.raises(ValueError, match="no real token"):
        packed_micro_batch(batch, None)


def _random_batch(lengths, width, seed=1):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 97, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    labels = input_ids.clone()
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
        if row % 2 == 0:
            labels[row, :length // 3] = IGNORE  # a prompt; odd rows have none (their first token is a label)
    input_ids[mask == 0] = 0
    labels[mask == 0] = IGNORE
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _loss_and_grads(model_dir, implementation, inputs, count):
    from training.finetune import ModelSource, load_model, selected_positions_loss

    model = load_model(ModelSource(str(model_dir)), implementation)
    loss = selected_positions_loss(model, inputs, count)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert len(grads) == len(list(model.parameters())), "a parameter got no gradient"
    return loss.detach(), grads


@pytest.mark.parametrize("block_rows", [1, 2, 4])
@pytest.mark.parametrize("inner", attention.PACKABLE)
def test_packed_loss_and_gradients_equal_the_padded_micro_batch(tiny_dir, monkeypatch, inner, block_rows):
    """fp32, uncompiled; the eager bound lowered so that length_aware runs both kernels (short rows' blocks on the
    matmul path, long ones' on sdpa). The reference is the padded micro-batch on transformers' own sdpa."""
    monkeypatch.setattr(attention, "PACKED_SHORT_ROWS_MAX", 9)
    batch = _random_batch([7, 23, 4, 16, 23], width=23)
    count = (torch.nn.functional.pad(batch["labels"], (0, 1), value=IGNORE)[..., 1:] != IGNORE).sum()
    reference_loss, reference_grads = _loss_and_grads(tiny_dir, "sdpa", batch, count)
    implementation = attention.packed_implementation(inner)
    packed = packed_micro_batch(batch, attention.packed_long_row_min(implementation), block_rows)
    if inner == attention.LENGTH_AWARE and block_rows == 4:
        assert [tuple(b.shape) for b in _blocks(packed)] == [(3, 23), (2, 7)]
    loss, grads = _loss_and_grads(tiny_dir, implementation, packed, count)
    torch.testing.assert_close(loss, reference_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.compile
def test_compiled_layers_compile_nothing_new_when_the_number_of_blocks_changes(tiny_dir):
    """The blocks reach the eager attention through the compiled layers' frames; dynamo guards on a tuple's length,
    so blocks passed as a tuple of tensors recompiled the layers at every new block count."""
    from training.finetune import ModelSource, compile_layers, compiled_graph_count, load_model

    model = load_model(ModelSource(str(tiny_dir)), attention.packed_implementation("sdpa"))
    assert compile_layers(model) == 2

    def train_on(lengths):  # block_rows=1: as many blocks as rows
        packed = packed_micro_batch(_random_batch(lengths, width=max(lengths)), None, block_rows=1)
        model(**{k: v for k, v in packed.items() if k != "labels"}, use_cache=False).logits.sum().backward()

    first = compiled_graph_count()
    train_on([5, 3])
    train_on([6, 4])
    before = compiled_graph_count()
    assert before > first, "the layers compiled nothing"
    for lengths in ([7, 5, 3], [8, 6, 4, 2], [9], [5, 4, 3, 2, 1]):
        train_on(lengths)
    assert compiled_graph_count() == before


def test_a_packed_kernel_refuses_an_unpacked_call(tiny_dir):
    from training.finetune import ModelSource, load_model

    model = load_model(ModelSource(str(tiny_dir)), attention.packed_implementation("sdpa"))
    batch = _random_batch([5, 3], width=5)
    with pytest.raises(ValueError, match="runs packed micro-batches only"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)


def test_a_row_longer_than_a_sliding_window_is_refused(tmp_path):
    """Mistral-style models pass their window to the kernel; causality alone would see past it."""
    from transformers import MistralConfig, MistralForCausalLM

    from training.finetune import ModelSource, load_model

    torch.manual_seed(0)
    MistralForCausalLM(MistralConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=4, num_key_value_heads=2, sliding_window=6)).save_pretrained(
        tmp_path)
    model = load_model(ModelSource(str(tmp_path)), attention.packed_implementation("sdpa"))
    short = packed_micro_batch(_random_batch([6, 4], width=6), None)
    model(**{k: v for k, v in short.items() if k != "labels"}, use_cache=False)  # within the window: runs
    long = packed_micro_batch(_random_batch([7, 4], width=7), None)
    with pytest.raises(ValueError, match="sliding window"):
        model(**{k: v for k, v in long.items() if k != "labels"}, use_cache=False)


def test_when_a_stage_packs():
    common = {"attention": "length_aware", "cuda": False, "processes": 1, "fsdp": False, "selected_logits": True,
              "unpad": True, "micro_batch": 4}
    assert choose_pack_rows("auto", **common)[0] is True
    assert choose_pack_rows(False, **common) == (False, "pack_rows: false")
    for change, words in (({"cuda": True}, "CUDA"), ({"processes": 2}, "DDP"), ({"unpad": False}, "null"),
                          ({"fsdp": True}, "FSDP"), ({"selected_logits": False}, "selected_logits"),
                          ({"attention": "flash_attention_2"}, "no packed kernel"), ({"micro_batch": 32}, "32 rows")):
        packs, reason = choose_pack_rows("auto", **{**common, **change})
        assert packs is False and words in reason, (change, reason)
    assert choose_pack_rows("auto", **{**common, "micro_batch": 16})[0] is True
    assert choose_pack_rows(True, **{**common, "processes": 2})[0] is True  # DDP when asked for
    with pytest.raises(ValueError, match="FSDP"):
        choose_pack_rows(True, **{**common, "fsdp": True})
    with pytest.raises(ValueError, match="not 'flash_attention_2'"):
        attention.packed_implementation("flash_attention_2")


def test_the_config_refuses_an_unknown_pack_rows():
    config = TrainConfig(pack_rows="yes", output_dir="runs/x", stages=[StageConfig(name="a", data="d")])
    with pytest.raises(TrainConfigError, match="pack_rows must be"):
        config.validate()
