"""Pure-torch engine (HF transformers): bf16 on CPU, one seeded torch.Generator per request, left-padded batched
scoring with a float32 LM head, so scores depend only on the network and not on batch neighbours."""
from __future__ import annotations

from typing import Sequence

from runners.api import GenerateResult, OnResult, SamplingSpec, ScoreResult
from runners.engines.cleanup import LIVE_ENGINES
from runners.engines.common import LocalEngine, eos_ids, first_stop, too_long
from runners.engines.config import TOP_LOGPROBS, EngineConfig


class TransformersEngine(LocalEngine):
    """Pure-torch engine: the machine's dtype (``dtype: auto``), one seeded torch.Generator per request,
    left-padded batched scoring."""

    def __init__(self, config: EngineConfig):
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the job's own progress is on the console
        super().__init__(config)
        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        self._threads = torch.get_num_threads()
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16,
                 "float32": torch.float32, "float": torch.float32}[self.config.dtype]
        self._model = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=dtype, attn_implementation=config.attn_implementation).to(self.device).eval()
        _float32_output_head(self._model)
        self._pad_id = (self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None
                        else self._tokenizer.eos_token_id)
        self._eos_ids = eos_ids(self._tokenizer, self.model_dir)
        LIVE_ENGINES.add(self)

    def _use_threads(self):
        import torch

        # Another DoFn in this process may have lowered the thread count (1 per SDK worker); the engine keeps its own.
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)

    # -- generation: one request at a time, its n samples batched, so results never depend on batch neighbours
    def generate(self, prompts: Sequence[str], specs: Sequence[SamplingSpec],
                 on_result: OnResult | None = None) -> list[GenerateResult]:
        if len(prompts) != len(specs):
            raise ValueError("generate needs one SamplingSpec per prompt")
        encoded = self._encode(prompts)
        results = []
        with self._lock:
            self._check_open()
            self._use_threads()
            for i, (ids, spec) in enumerate(zip(encoded, specs)):
                results.append(self._generate_one(ids, spec))
                if on_result is not None:
                    on_result(i, results[-1])
        return results

    def _generate_one(self, prompt_ids: list[int], spec: SamplingSpec) -> GenerateResult:
        import torch

        error = too_long(len(prompt_ids), self.config.max_model_len, 1)
        if error:
            return GenerateResult(texts=(), n_prompt_tokens=len(prompt_ids), error=error)
        n = spec.n
        max_new = min(spec.max_tokens, self.config.max_model_len - len(prompt_ids))
        generator = torch.Generator(device=self.device).manual_seed(int(spec.seed))
        vocab = self._model.config.vocab_size
        with torch.inference_mode():
            input_ids = torch.tensor([prompt_ids], device=self.device)
            out = self._model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            if n > 1:
                cache.batch_repeat_interleave(n)
            logits = out.logits[:, -1, :].float().expand(n, -1)
            seen = torch.zeros((n, logits.shape[-1]), dtype=torch.bool, device=self.device)
            seen[:, torch.tensor(prompt_ids, device=self.device)] = True
            generated: list[list[int]] = [[] for _ in range(n)]
            texts: list[str | None] = [None] * n
            for _ in range(max_new):
                next_tokens = self._sample(logits[:, :vocab], seen[:, :vocab], spec, generator,
                                           banned=self._eos_ids if spec.ban_eos else ())
                for row in range(n):
                    if texts[row] is not None:
                        continue
                    token = int(next_tokens[row])
                    if token in self._eos_ids:
                        texts[row] = self._decode(generated[row])
                        continue
                    generated[row].append(token)
                    if spec.stop:
                        text = self._decode(generated[row])
                        cut = first_stop(text, spec.stop)
                        if cut is not None:
                            texts[row] = text[:cut]
                if all(text is not None for text in texts):
                    break
                seen[torch.arange(n, device=self.device), next_tokens] = True
                out = self._model(input_ids=next_tokens.view(n, 1), past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                logits = out.logits[:, -1, :].float()
        final = tuple(text if text is not None else self._decode(tokens) for text, tokens in zip(texts, generated))
        return GenerateResult(texts=final, n_prompt_tokens=len(prompt_ids),
                              n_generated_tokens=sum(len(tokens) for tokens in generated))

    def _decode(self, tokens: list[int]) -> str:
        return self._tokenizer.decode(tokens, skip_special_tokens=True)

    @staticmethod
    def _sample(logits, seen, spec: SamplingSpec, generator, banned=()):
        """One sampling step with the same semantics as vLLM: banned tokens, penalty, temperature, top-k, top-p,
        then draw."""
        import torch

        if banned:
            logits = logits.clone()
            logits[:, sorted(banned)] = float("-inf")
        if spec.repetition_penalty != 1.0:
            penalized = torch.where(logits > 0, logits / spec.repetition_penalty, logits * spec.repetition_penalty)
            logits = torch.where(seen, penalized, logits)
        if spec.temperature <= 1e-5:
            return logits.argmax(dim=-1)
        logits = logits / spec.temperature
        if 0 < spec.top_k < logits.shape[-1]:
            kth = logits.topk(spec.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if spec.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            drop_sorted = cumulative - sorted_logits.softmax(dim=-1) > spec.top_p  # always keeps the top token
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).view(-1)

    # -- scoring: length-sorted, left-padded batches, only the last position's logits
    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[Sequence[int]],
                            top_ns: Sequence[int] | None = None) -> list[ScoreResult]:
        """Exact log-probs of ``token_ids`` and always the top-5: the full distribution is computed anyway."""
        import torch

        encoded, results, todo = self._scoreable(prompts, token_ids)
        todo.sort(key=lambda i: (len(encoded[i]), i))
        size = max(1, self.config.score_batch_size)
        with self._lock:
            self._check_open()
            self._use_threads()
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                logprobs = self.last_position_logprobs([encoded[i] for i in chunk])
                top_values, top_ids = logprobs.topk(TOP_LOGPROBS, dim=-1)
                for row, i in enumerate(chunk):
                    wanted = torch.tensor(list(token_ids[i]), dtype=torch.long)
                    values = logprobs[row].gather(0, wanted).tolist()
                    results[i] = ScoreResult(
                        logprobs=dict(zip(map(int, token_ids[i]), values)),
                        top_logprobs=dict(zip(top_ids[row].tolist(), top_values[row].tolist())))
        return results  # type: ignore[return-value]

    def last_position_logprobs(self, batch: list[list[int]]):
        """Full-vocabulary float32 log-softmax of the next token after each (left-padded) prompt, on CPU."""
        import torch

        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self._model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                              position_ids=positions.to(self.device), use_cache=False, logits_to_keep=1)
            logits = out.logits[:, -1, : self._model.config.vocab_size].float()
            return torch.log_softmax(logits, dim=-1).cpu()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._model = None
            LIVE_ENGINES.discard(self)


def _float32_output_head(model) -> None:
    """Compute the LM head in float32 (bf16 hidden states upcast first).

    In bf16 a logit near 20 can only move in steps of 0.125, and so would every log-prob; a float32 head makes
    the scores depend only on the (bf16) network, not on rounding the last matmul. The extra cost is one
    vocab x hidden float32 weight and a float32 matmul per position kept (``logits_to_keep``).
    """
    import torch

    head = model.get_output_embeddings()
    if head is None or not isinstance(head, torch.nn.Linear) or head.weight.dtype == torch.float32:
        return

    class Float32Head(torch.nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.weight = torch.nn.Parameter(linear.weight.detach().float(), requires_grad=False)
            self.bias = (None if linear.bias is None
                         else torch.nn.Parameter(linear.bias.detach().float(), requires_grad=False))

        def forward(self, hidden):
            return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)

    model.config.tie_word_embeddings = False  # keep transformers from re-tying the new head to the embeddings
    model.set_output_embeddings(Float32Head(head))
