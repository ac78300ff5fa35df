"""What self-play's run-dependence rules refuse of ordinary human code: Code Alpaca 2k's Python answers.

    python bench/selfplay_rule_cost.py [--alpaca ../shared/data/code_alpaca_2k.json] [--out FILE.json]

Takes every answer that compiles, defines a function at top level and imports only the self-play safe modules
(what a self-play `g` may import), and runs the two rules that refuse code for what its result may depend on:
`hashes_by_address` (`address_order.address_hash_route`) and `finalizes_generator`
(`finalizers.generator_finalizer_route`). Prints the count per refusal, with the rows, for a reader to judge
whether each refused program could vary between runs.
"""
from __future__ import annotations

import argparse
import ast
import collections
import json
import logging
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from transforms.selfplay.address_order import address_hash_route  # noqa: E402
from transforms.selfplay.finalizers import generator_finalizer_route  # noqa: E402
from transforms.selfplay.preset import load_preset  # noqa: E402


def _imported_modules(tree: ast.Module) -> set[str]:
    return {(alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
            for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}


def rule_cost(records: list[dict]) -> dict:
    safe = set(load_preset().filters.safe_imports)
    refused: dict[str, list[int]] = collections.defaultdict(list)
    checked = 0
    for row, record in enumerate(records):
        code = record["output"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # `x is 1` in some answers
                tree = ast.parse(code)
                compile(code, "<answer>", "exec")
        except (SyntaxError, ValueError):
            continue
        if not any(isinstance(node, ast.FunctionDef) for node in tree.body) or _imported_modules(tree) - safe:
            continue
        checked += 1
        route = address_hash_route(code) or generator_finalizer_route(code)
        if route:
            refused[route.split(" (line")[0]].append(row)
    by_reason = sorted(refused.items(), key=lambda item: (-len(item[1]), item[0]))
    return {"programs": checked, "refused": sum(len(rows) for rows in refused.values()),
            "by_reason": [{"reason": reason, "count": len(rows), "rows": rows} for reason, rows in by_reason]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpaca", default=str(REPO.parent / "shared" / "data" / "code_alpaca_2k.json"))
    parser.add_argument("--out", help="write the result as JSON here too")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    result = rule_cost(json.loads(Path(args.alpaca).read_text()))
    print(f"{result['refused']} of {result['programs']} programs refused")
    for entry in result["by_reason"]:
        print(f"{entry['count']:4d}  {entry['reason']}  rows {entry['rows'][:8]}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
