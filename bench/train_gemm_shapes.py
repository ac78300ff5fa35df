"""Where the Trainer's GEMM rate goes: SmolLM2-135M's linear layers as one training step runs them, alone.

For each weight shape (q/o, k/v, gate/up, down) and row count, in bf16 at this process's torch threads, the three
GEMMs of a linear layer's step:

- ``forward``: x Wᵀ (``F.linear``);
- ``grad_input``: dY W;
- ``grad_weight``: dYᵀ X, the reduction over the rows (what autograd's ``mm`` gets: a transposed view of dY);

each ``hot`` (back to back) and ``cold`` (128 MB written between calls, so neither operand is in cache), in GFLOP per
wall second and per CPU second. Also ``grad_weight`` with dYᵀ or Xᵀ copied to contiguous memory first, the obvious
fix for a transposed operand, by eager PyTorch and (dYᵀ) by an Inductor-compiled transpose.

    python bench/train_gemm_shapes.py --json bench/results/train-gemm-shapes.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {"q/o": (576, 576), "k/v": (192, 576), "gate/up": (1536, 576), "down": (576, 1536)}  # (out, in)


def rates(call, flops: int, reps: int, flush=None) -> dict[str, float]:
    """GFLOP per wall second and per CPU second of ``call``, timed alone (``flush`` runs untimed before each)."""
    for _ in range(2):
        call()
    wall = cpu = 0.0
    for _ in range(reps):
        if flush is not None:
            flush()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        call()
        wall += time.perf_counter() - wall_start
        cpu += time.process_time() - cpu_start
    return {"wall": round(flops * reps / wall / 1e9, 1), "cpu": round(flops * reps / max(cpu, 1e-9) / 1e9, 1)}


def compiled_transpose():
    """``a.t().contiguous()`` compiled by Inductor: a tiled copy, about 4x faster than eager's on these shapes."""
    import torch

    # one graph per shape; the bench's default rows and shapes need more than dynamo's default limit of 8, past
    # which it would quietly run the eager copy
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(lambda a: a.t().contiguous(), dynamic=False)


def step_gemms(x, weight, grad_out, transpose=None) -> dict:
    import torch

    transpose = transpose or compiled_transpose()
    return {
        "forward": lambda: torch.nn.functional.linear(x, weight),
        "grad_input": lambda: grad_out @ weight,
        "grad_weight": lambda: grad_out.t() @ x,
        "grad_weight_dy_copied": lambda: grad_out.t().contiguous() @ x,
        "grad_weight_x_copied": lambda: (x.t().contiguous() @ grad_out).t(),
        "grad_weight_dy_transposed_compiled": lambda: transpose(grad_out) @ x,
    }


def measure(rows: int, reps: int, shapes: dict[str, tuple[int, int]] = SHAPES) -> list[dict]:
    import torch

    buffer = torch.empty(32 * 1024 * 1024, dtype=torch.float32)  # 128 MB, more than this CPU's caches

    def flush():
        buffer.add_(1.0)

    generator = torch.Generator().manual_seed(0)
    transpose = compiled_transpose()
    found = []
    for name, (out_features, in_features) in shapes.items():
        x = torch.randn(rows, in_features, generator=generator).bfloat16()
        weight = torch.randn(out_features, in_features, generator=generator).bfloat16()
        grad_out = torch.randn(rows, out_features, generator=generator).bfloat16()
        flops = 2 * rows * out_features * in_features
        for kind, call in step_gemms(x, weight, grad_out, transpose).items():
            found.append({"shape": name, "out": out_features, "in": in_features, "rows": rows, "gemm": kind,
                          "hot": rates(call, flops, reps), "cold": rates(call, flops, reps, flush)})
    return found


def summary(found: list[dict]) -> dict[str, dict[str, float]]:
    """Per GEMM kind: the FLOP-weighted hot and cold GFLOP per wall second over the shapes (one step's mix)."""
    by_kind: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(row["gemm"] for row in found):
        rows = [row for row in found if row["gemm"] == kind]
        flops = [2 * row["rows"] * row["out"] * row["in"] for row in rows]
        by_kind[kind] = {when: round(sum(flops) / sum(f / row[when]["wall"] for f, row in zip(flops, rows)), 1)
                         for when in ("hot", "cold")}
    return by_kind


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1024,2048,4096", help="row counts (tokens per GEMM), comma-separated")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    from runners.hardware import describe_machine

    machine = describe_machine()
    found = [row for rows in (int(r) for r in args.rows.split(",")) for row in measure(rows, args.reps)]
    assert found, "nothing measured"
    report = {"command": "python bench/train_gemm_shapes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
              "torch_threads": torch.get_num_threads(), "by_gemm_wall_gflops": summary(found), "gemms": found}
    for row in found:
        print(f"{row['rows']:5d} {row['shape']:8s} {row['gemm']:22s} hot {row['hot']['wall']:7.1f} wall "
              f"{row['hot']['cpu']:7.1f} cpu | cold {row['cold']['wall']:7.1f} wall {row['cold']['cpu']:7.1f} cpu")
    print(json.dumps(report["by_gemm_wall_gflops"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
