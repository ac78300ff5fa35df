"""pass@k with the unbiased estimator (Chen et al., 2021), and the summary of per-sample results. Pure."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def summarize_results(results: Iterable[Mapping[str, Any]], ks: Iterable[int] = (1,),
                      task_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """pass@k (in %, averaged over problems) and status counts from per-sample results
    (``{"task_id", "status", ...}``). A k larger than a problem's sample count is not reported; such k are listed
    in ``pass_k_omitted``. With ``task_ids``
    (every problem the run was asked to solve), a problem without any sample counts as unsolved rather than
    leaving the average."""
    per_task: dict[str, list[bool]] = {t: [] for t in task_ids or ()}
    statuses: dict[str, int] = {}
    for r in results:
        per_task.setdefault(r["task_id"], []).append(r["status"] == "passed")
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    summary: dict[str, Any] = {"problems": len(per_task), "samples": sum(statuses.values()),
                               "statuses": dict(sorted(statuses.items()))}
    omitted = []
    for k in ks:
        if per_task and all(len(v) >= k for v in per_task.values() if v):
            scores = [pass_at_k(len(v), sum(v), k) if v else 0.0 for v in per_task.values()]
            summary[f"pass@{k}"] = round(100.0 * sum(scores) / len(scores), 2)
        else:
            omitted.append(k)
    if omitted:  # asked for (e.g. the default 1,10,100) but some problem has fewer samples: say so, not just skip
        summary["pass_k_omitted"] = omitted
    summary["solved"] = sorted(t for t, v in per_task.items() if any(v))
    return summary
