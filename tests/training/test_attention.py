"""training.attention: the choice of attention kernel, and that the length-aware kernel computes what sdpa does on
both of its paths (short rows on the matmul path, long rows on sdpa), padded rows included."""
from __future__ import annotations

import pytest
import torch

from training import attention
from training.attention import LENGTH_AWARE, choose_attention
from training.config import StageConfig, TrainConfig, TrainConfigError


def test_auto_takes_length_aware_only_in_compiled_cpu_layers_and_a_named_kernel_as_named():
    assert choose_attention("auto", compiled=True, cuda=False).implementation == LENGTH_AWARE
    assert choose_attention("auto", compiled=False, cuda=False).implementation == "sdpa"
    assert choose_attention("auto", compiled=True, cuda=True).implementation == "sdpa"
    for named in ("sdpa", "eager", LENGTH_AWARE):
        for compiled in (True, False):
            assert choose_attention(named, compiled=compiled, cuda=False).implementation == named


def test_an_unknown_attention_is_refused_by_the_config():
    with pytest.raises(ValueError, match="attention must be one of"):
        choose_attention("flash", compiled=False, cuda=False)
    config = TrainConfig(attention="flash", output_dir="runs/x", stages=[StageConfig(name="a", data="d")])
    with pytest.raises(TrainConfigError, match="attention must be one of"):
        config.validate()


def _logits_and_grads(model_dir, implementation: str, input_ids, mask):
    from training.finetune import ModelSource, load_model

    model = load_model(ModelSource(str(model_dir)), implementation)
    assert model.config._attn_implementation == implementation
    logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
    (logits * mask[..., None]).sum().backward()  # padded positions' outputs are not used by training
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert grads, "no gradients to compare"
    return logits, grads


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("short_rows_max, takes_matmul_path", [(64, True), (4, False)])
def test_length_aware_attention_computes_what_sdpa_does(tiny_dir, monkeypatch, short_rows_max, takes_matmul_path,
                                                         padded):
    """Uncompiled: the eager bound applies (the compiled one is the same code under torch.compile)."""
    from transformers.models.llama import modeling_llama

    monkeypatch.setattr(attention, "EAGER_SHORT_ROWS_MAX", short_rows_max)
    calls = []
    real_eager = modeling_llama.eager_attention_forward
    monkeypatch.setattr(modeling_llama, "eager_attention_forward",
                        lambda *a, **k: calls.append(a[1].shape) or real_eager(*a, **k))
    torch.manual_seed(1)
    input_ids = torch.randint(0, 97, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    if padded:  # right padding, as the collator makes it; unpadded, sdpa's mask is None (causal alone)
        mask[1, 9:] = 0
        mask[2, 5:] = 0
    reference, reference_grads = _logits_and_grads(tiny_dir, "sdpa", input_ids, mask)
    assert not calls
    logits, grads = _logits_and_grads(tiny_dir, LENGTH_AWARE, input_ids, mask)
    assert bool(calls) == takes_matmul_path, calls  # one call per layer when the rows are short
    real = mask.bool()
    torch.testing.assert_close(logits[real], reference[real], rtol=1e-5, atol=1e-5)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_compiled_layers_take_the_matmul_path_for_longer_rows_than_eager_ones(monkeypatch):
    """A 200-token row: above the eager bound, within the compiled one (dynamo traces the choice)."""
    from transformers.models.llama import modeling_llama

    assert attention.EAGER_SHORT_ROWS_MAX < 200 <= attention.COMPILED_SHORT_ROWS_MAX
    calls = []
    real_eager = modeling_llama.eager_attention_forward
    monkeypatch.setattr(modeling_llama, "eager_attention_forward",
                        lambda *a, **k: calls.append("matmul") or real_eager(*a, **k))

    class Module(torch.nn.Module):
        num_key_value_groups = 1
        is_causal = True

    def attend(q, k, v):
        return attention.length_aware_attention(Module(), q, k, v, None, scaling=0.125, dropout=0.0)[0]

    q, k, v = (torch.randn(1, 2, 200, 16) for _ in range(3))
    eager_out = attend(q, k, v)
    assert calls == []
    compiled_out = torch.compile(attend, backend="eager", fullgraph=True)(q, k, v)
    assert calls == ["matmul"]
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)


def test_switchable_attention_runs_the_path_its_reader_names_at_each_call(monkeypatch):
    """The benches' switch: length_aware when the reader says so, transformers' sdpa otherwise, read per call."""
    from transformers.integrations import sdpa_attention

    taken = []
    monkeypatch.setattr(attention, "length_aware_attention", lambda *a, **k: taken.append("length_aware") or "own")
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", lambda *a, **k: taken.append("sdpa") or "sdpa")
    path = {"now": LENGTH_AWARE}
    switch = attention.switchable_attention(lambda: path["now"])
    outputs = []
    for now in (LENGTH_AWARE, "sdpa", "sdpa", LENGTH_AWARE):
        path["now"] = now
        outputs.append(switch(None, None, None, None, None, scaling=1.0))
    assert taken == [LENGTH_AWARE, "sdpa", "sdpa", LENGTH_AWARE]
    assert outputs == ["own", "sdpa", "sdpa", "own"]
