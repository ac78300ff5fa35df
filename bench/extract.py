"""Extraction throughput: the DoFn alone vs the whole extraction pipeline, on one core.

    python bench/extract.py [--records 100000] [--policy multilang] [--workdir /tmp/extract-bench]
    python bench/extract.py --memory [--records 10000]   # peak RSS of the extract job at 1x and 10x, JSONL and Parquet
    python bench/extract.py --memory-sites --records 5000 # where the growth goes: traced heap by allocation site

The corpus is generated from real code: every top-level function and class of the running interpreter's
standard library (Python), plus the Code Alpaca responses when ../shared is present, wrapped as fenced,
unfenced and prose-bearing responses and cycled with a distinct suffix until the record count is reached.

"DoFn alone" calls ``ExtractCodeFn.process`` in a loop in this process. "Pipeline" runs
read JSONL -> extract -> exact dedup -> write Parquet (snippets and rejected) -> manifest on the in-process
DirectRunner with one worker, i.e. everything the `--stages extract` job does. Both report snippets/s and MB/s
of response text.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runners.hardware import describe_machine  # noqa: E402
from transforms.io.readers import default_source_root, list_source_files  # noqa: E402


def real_snippets() -> list[str]:
    snippets = []
    for path in list_source_files(default_source_root()):
        if not path.endswith(".py"):
            continue
        try:
            source = Path(path).read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = source.splitlines()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                code = "\n".join(lines[start - 1 : node.end_lineno])
                if 2 <= code.count("\n") <= 150:
                    snippets.append(code)
    shared = REPO.parent / "shared" / "data" / "code_alpaca_2k.json"
    alpaca = json.loads(shared.read_text()) if shared.exists() else []
    return snippets, [row["output"] for row in alpaca]


def make_corpus(path: Path, n_records: int) -> int:
    functions, alpaca = real_snippets()
    shapes = [
        lambda code, i: f"Here is the solution:\n\n```python\n{code}\n```\n\nThis runs in linear time.",
        lambda code, i: code,
        lambda code, i: f"```py\n{code}\n```",
    ]
    nbytes = 0
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_records):
            if alpaca and i % 10 == 9:
                response = alpaca[i % len(alpaca)] + f"\n# variant {i}" * (i >= len(alpaca))
            else:
                code = functions[i % len(functions)] + (f"\n# variant {i // len(functions)}"
                                                        if i >= len(functions) else "")
                response = shapes[i % len(shapes)](code, i)
            nbytes += len(response.encode("utf-8"))
            f.write(json.dumps({"instruction": f"task {i}", "response": response}) + "\n")
    return nbytes


def bench_dofn(corpus: Path, policy: str) -> tuple[float, int]:
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.inverse_instruct import extraction_config
    from transforms.extract.beam import ExtractCodeFn
    from transforms.io.readers import ColumnMapping, make_source_pair

    fn = ExtractCodeFn(extraction_config(PipelineOptions([f"--extraction-policy={policy}"])))
    mapping = ColumnMapping()
    pairs = [make_source_pair(json.loads(line), mapping, str(corpus), row) for row, line in enumerate(corpus.open())]
    kept = 0
    started = time.perf_counter()
    for pair in pairs:
        for out in fn.process(pair):
            kept += isinstance(out, dict)
    fn.finish_bundle()  # publishes the bundle's summed counts
    return time.perf_counter() - started, kept


def bench_pipeline(corpus: Path, out: Path, policy: str) -> tuple[float, dict]:
    from beam_pipelines.inverse_instruct import run

    started = time.perf_counter()
    manifest = run([
        f"--input={corpus}", f"--output={out}", "--stages=extract", f"--extraction-policy={policy}",
        "--direct_num_workers=1", "--direct_running_mode=in_memory",
    ])
    return time.perf_counter() - started, manifest


def peak_rss_of_job(corpus: Path, out: Path, policy: str) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of the `--stages extract` job run in its own process (os.wait4's rusage)."""
    import subprocess

    command = [sys.executable, "-m", "beam_pipelines.inverse_instruct", f"--input={corpus}", f"--output={out}",
               "--stages=extract", f"--extraction-policy={policy}", "--direct_num_workers=1",
               "--direct_running_mode=in_memory", "--quiet"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"extract job failed on {corpus}: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def bench_memory(workdir: Path, records: int, policy: str) -> dict:
    """Peak RSS at 1x and 10x input, on JSONL and on Parquet (target: 10x at most 1.3x of 1x)."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    report = {}
    for scale in (1, 10):
        jsonl = workdir / f"corpus-{scale}x.jsonl"
        make_corpus(jsonl, records * scale)
        parquet = workdir / f"corpus-{scale}x.parquet"
        pq.write_table(pj.read_json(jsonl), parquet, row_group_size=10_000)
        for fmt, corpus in (("jsonl", jsonl), ("parquet", parquet)):
            rss, wall = peak_rss_of_job(corpus, workdir / f"out-{fmt}-{scale}x", policy)
            report[f"{fmt}_{scale}x"] = {"records": records * scale, "peak_rss_mib": round(rss, 1),
                                         "wall_seconds": round(wall, 1)}
            print(f"{fmt:8} {scale:>2}x ({records * scale:,} records): peak RSS {rss:,.0f} MiB, {wall:.1f} s")
    for fmt in ("jsonl", "parquet"):
        ratio = report[f"{fmt}_10x"]["peak_rss_mib"] / report[f"{fmt}_1x"]["peak_rss_mib"]
        report[f"{fmt}_ratio_10x_over_1x"] = round(ratio, 3)
        print(f"{fmt}: peak RSS 10x / 1x = {ratio:.2f} (target <= 1.30)")
    return report


def traced_peak_sites(corpus: Path, out: Path, policy: str, frames: int = 6) -> tuple[float, list]:
    """Run the extract job in this process under tracemalloc; a thread snapshots the traced heap twice a second
    and keeps the largest. Returns (peak traced MiB, [(site, bytes)] of that snapshot, grouped by the innermost
    frame inside this project or Beam, else the innermost frame)."""
    import threading
    import tracemalloc

    tracemalloc.start(frames)
    best: dict = {"size": -1, "snapshot": None}
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            size, _ = tracemalloc.get_traced_memory()
            if size > best["size"]:
                best.update(size=size, snapshot=tracemalloc.take_snapshot())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        bench_pipeline(corpus, out, policy)
    finally:
        done.set()
        sampler.join()
        tracemalloc.stop()
    sites: dict[str, int] = {}
    for stat in best["snapshot"].statistics("traceback"):
        frames_inner_first = list(reversed(stat.traceback))  # tracemalloc stores the oldest frame first
        chosen = frames_inner_first[0]
        for frame in frames_inner_first:
            ours = frame.filename.startswith(str(REPO)) and "/site-packages/" not in frame.filename
            if ours or "apache_beam" in frame.filename:
                chosen = frame
                break
        name = chosen.filename.split("site-packages/")[-1].replace(str(REPO) + "/", "")
        key = f"{name}:{chosen.lineno}"
        sites[key] = sites.get(key, 0) + stat.size
    return best["size"] / 2**20, sorted(sites.items(), key=lambda kv: -kv[1])


def bench_memory_sites(workdir: Path, records: int, policy: str) -> dict:
    """Where the extra bytes per record go: the traced heap at its peak, 1x against 10x, by allocation site."""
    peaks, by_site = {}, {}
    warm = workdir / "sites-warm.jsonl"  # imports and lazy caches first, so that neither traced run holds them
    make_corpus(warm, 200)
    bench_pipeline(warm, workdir / "sites-out-warm", policy)
    for scale in (1, 10):
        corpus = workdir / f"sites-{scale}x.jsonl"
        make_corpus(corpus, records * scale)
        peaks[scale], sites = traced_peak_sites(corpus, workdir / f"sites-out-{scale}x", policy)
        by_site[scale] = dict(sites)
        print(f"{scale:>2}x ({records * scale:,} records): traced heap peak {peaks[scale]:,.0f} MiB", flush=True)
    extra = records * 9
    growth = sorted(((site, (by_site[10].get(site, 0) - by_site[1].get(site, 0)) / extra)
                     for site in by_site[10].keys() | by_site[1].keys()), key=lambda kv: -kv[1])
    print(f"traced bytes per extra record: {(peaks[10] - peaks[1]) * 2**20 / extra:,.0f}; by site:")
    for site, per_record in growth[:15]:
        print(f"  {per_record:8,.0f} B/record  {site}")
    return {"records_1x": records, "traced_peak_mib": peaks,
            "bytes_per_extra_record": round((peaks[10] - peaks[1]) * 2**20 / extra),
            "top_sites_bytes_per_extra_record": [[site, round(b)] for site, b in growth[:15]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--policy", default="multilang", choices=("multilang", "paper"))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--memory", action="store_true", help="peak RSS at 1x and 10x --records instead")
    parser.add_argument("--memory-sites", action="store_true",
                        help="where the memory growth goes: the traced heap's peak by allocation site, 1x and 10x")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="extract-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    if args.memory:
        print(json.dumps({"machine": machine, **bench_memory(workdir, args.records, args.policy)}))
        return
    if args.memory_sites:
        print(json.dumps({"machine": machine, **bench_memory_sites(workdir, args.records, args.policy)}))
        return
    corpus = workdir / "corpus.jsonl"
    mb = make_corpus(corpus, args.records) / 1e6
    print(f"corpus: {args.records} records, {mb:.1f} MB of responses ({corpus})")

    dofn_s, kept = bench_dofn(corpus, args.policy)
    print(f"DoFn alone:  {args.records / dofn_s:,.0f} records/s, {kept / dofn_s:,.0f} snippets/s, "
          f"{mb / dofn_s:.2f} MB/s ({dofn_s:.1f} s)")
    pipe_s, manifest = bench_pipeline(corpus, workdir / "out", args.policy)
    kept_pipe = manifest["stages"]["extract"]["records_out"]
    print(f"pipeline:    {args.records / pipe_s:,.0f} records/s, {kept_pipe / pipe_s:,.0f} snippets/s, "
          f"{mb / pipe_s:.2f} MB/s ({pipe_s:.1f} s)")
    print(f"pipeline / DoFn-alone throughput: {dofn_s / pipe_s:.2f} (target >= 0.50)")
    print(json.dumps({"machine": machine, "records": args.records, "mb": round(mb, 2), "policy": args.policy,
                      "dofn_seconds": round(dofn_s, 2), "pipeline_seconds": round(pipe_s, 2),
                      "ratio": round(dofn_s / pipe_s, 3)}))


if __name__ == "__main__":
    main()
