"""Yield of the `paper` and `multilang` extraction policies on Code Alpaca 2k (real data), per language.

    python bench/extract_yield.py [path/to/code_alpaca_2k.json]
"""
from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.extract.policies import Extracted, ExtractionConfig, extract_code  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "code_alpaca_2k.json"


def main(path: Path) -> None:
    outputs = [row["output"] for row in json.loads(path.read_text())]
    for config in (ExtractionConfig.paper(), ExtractionConfig.multilang()):
        started = time.perf_counter()
        results = [extract_code(o, config) for o in outputs]
        seconds = time.perf_counter() - started
        kept = [r for r in results if isinstance(r, Extracted)]
        languages = collections.Counter(r.language for r in kept)
        reasons = collections.Counter(r.reason for r in results if not isinstance(r, Extracted))
        print(f"{config.policy}: kept {len(kept)}/{len(outputs)} ({100 * len(kept) / len(outputs):.1f}%), "
              f"{1e6 * seconds / len(outputs):.0f} us/record")
        print("  languages: " + ", ".join(f"{k} {v}" for k, v in languages.most_common()))
        print("  rejected:  " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
