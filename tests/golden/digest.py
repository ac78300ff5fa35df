"""Content digests of a job's output directory, independent of the project's own readers.

Every Parquet directory is read with pyarrow alone; its rows become canonical JSON, sorted, and hashed, so
two runs compare equal exactly when they wrote the same records (whatever the file split). The manifest
contributes its per-stage counts only (wall times and paths differ between runs by nature).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pyarrow.parquet as pq


def _rows(directory: str) -> list[str]:
    rows = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".parquet"):
            for row in pq.read_table(os.path.join(directory, name)).to_pylist():
                rows.append(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str))
    return sorted(rows)


def output_digest(output: str) -> dict[str, Any]:
    """``{"parquet": {relative dir: {"rows": n, "sha256": ...}}, "stages": manifest stage counts}``."""
    parquet = {}
    for root, _dirs, files in os.walk(output):
        if "shards.json" in files:
            rows = _rows(root)
            parquet[os.path.relpath(root, output)] = {
                "rows": len(rows),
                "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
            }
    with open(os.path.join(output, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    stages = {name: {k: s[k] for k in ("records_in", "records_out", "rejected")}
              for name, s in manifest["stages"].items()}
    return {"parquet": dict(sorted(parquet.items())), "stages": stages}


if __name__ == "__main__":
    import sys

    print(json.dumps(output_digest(sys.argv[1]), indent=2, sort_keys=True))
