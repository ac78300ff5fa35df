"""The batch-invariant AMX tile kernel (``runners/engines/amx_tiles.py``) against oneDNN, per weight shape of
SmolLM2-135M and row count, at this process's torch threads: microseconds per matmul for

- ``tiles``: the tile kernel on all rows (what the default runs below ``vllm_plugin.TILES_BELOW`` rows);
- ``blocks``: oneDNN in calls of at most 32 rows (the default's path before the kernel);
- ``one_call``: oneDNN on all rows in one call (``--cpu-amx full``: batch-dependent rounding).

It also checks that the kernel gives exactly the 32-row blocks' results on each shape.

    python bench/amx_tiles.py --json bench/results/amx_tiles.json
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = ((960, 576), (576, 576), (3072, 576), (576, 1536), (49152, 576))
ROWS = (1, 8, 32, 64, 128, 256, 512, 2048)


def microseconds(call, budget_s: float = 0.4) -> float:
    call()
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < budget_s or reps < 3:
        call()
        reps += 1
    return (time.perf_counter() - start) / reps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch
    from vllm import _custom_ops as ops

    from runners.engines import amx_tiles, vllm_plugin
    from runners.hardware import describe_machine

    if not vllm_plugin.amx_tiles_usable():
        sys.exit("this CPU has no AMX")
    vllm_plugin.request_amx_tile_state()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    rows_out = []
    for n, k in SHAPES:
        weight = (torch.randn(n, k, generator=generator) * 0.05).to(torch.bfloat16)
        handler = ops.create_onednn_mm(weight.t(), 32)
        packed = amx_tiles.pack_weight(weight)
        for m in ROWS:
            if n > 10_000 and m > 256:  # the LM head runs on one row per sequence
                continue
            x = torch.randn(m, k, generator=generator).to(torch.bfloat16)
            out = torch.empty(m, n, dtype=torch.bfloat16)
            blocks_out = torch.empty(m, n, dtype=torch.bfloat16)
            tiles = microseconds(functools.partial(amx_tiles.linear, x, packed, out=out))
            blocks = microseconds(functools.partial(vllm_plugin._matmul_in_32_row_blocks, x, None,
                                                    handler.handler_tensor, blocks_out))
            one_call = microseconds(functools.partial(torch.ops._C.onednn_mm, out, x, None, handler.handler_tensor))
            amx_tiles.linear(x, packed, out=out)
            row = {"shape": f"{n}x{k}", "rows": m, "tiles_us": round(tiles, 1), "blocks_us": round(blocks, 1),
                   "one_call_us": round(one_call, 1), "tiles_equal_blocks": bool(torch.equal(out, blocks_out))}
            rows_out.append(row)
            print(f"{row['shape']:>9} {m:>5} rows: tiles {tiles:8.1f} us  blocks {blocks:8.1f}  one call "
                  f"{one_call:8.1f}  tiles/blocks {tiles / blocks:.2f}  tiles/one call {tiles / one_call:.2f}  "
                  f"{'equal' if row['tiles_equal_blocks'] else 'DIFFERENT'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": describe_machine(), "threads": args.threads,
                                               "results": rows_out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
