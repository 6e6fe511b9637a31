"""Pick cost by pool size: logdist's picker against the plain O(n) smooth WRR, same run.

python -m logdist.bench.picker [--picks N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

from logdist.core.picker import SmoothWeightedPicker, WeightedPicker
from logdist.core.registry import Registry

SIZES = (10, 100, 1_000, 10_000)


def per_pick_us(pick: Any, picks: int, costs: list[int]) -> float:
    n = len(costs)
    start = time.perf_counter()
    for i in range(picks):
        pick(costs[i % n])
    return (time.perf_counter() - start) / picks * 1e6


def _contenders(size: int, picks: int) -> tuple[dict[str, tuple[Any, int]], list[int], str]:
    """The pick functions measured at `size` analyzers, with how many picks each gets."""
    rand = random.Random(size)
    weights = {f"a{i}": rand.uniform(0.1, 10) for i in range(size)}
    costs = [rand.randint(1, 20) for _ in range(1024)]
    logdist_picker = WeightedPicker()
    for key, w in weights.items():
        logdist_picker.add(key, w)
    baseline = SmoothWeightedPicker(weights)
    registry = Registry(now=time.monotonic, max_pending=1 << 30)
    for key, w in weights.items():
        registry.add(key, f"http://127.0.0.1:1/{key}", w)
        registry.record_success(key)

    def assign(cost: int) -> None:
        analyzer = registry.assign(cost)
        assert analyzer is not None
        registry.release(analyzer.id)

    baseline_picks = max(100, picks // max(1, size // 100))  # the O(n) form is slow at 10,000
    contenders = {
        "logdist_pick_us": (logdist_picker.pick, picks),
        "registry_assign_us": (assign, picks),
        "baseline_smooth_pick_us": (baseline.pick, baseline_picks),
    }
    return contenders, costs, "smooth" if logdist_picker.is_smooth else "deadline"


def measure_sizes(sizes: tuple[int, ...], picks: int, rounds: int = 5) -> list[dict[str, Any]]:
    """µs a pick at each size: the best of `rounds` slices, the sizes taken in turn so that a
    slow spell of the machine does not fall on one size alone."""
    built = {size: _contenders(size, picks) for size in sizes}
    best: dict[tuple[int, str], float] = {}
    for _ in range(rounds):
        for size, (contenders, costs, _) in built.items():
            for name, (pick, n) in contenders.items():
                us = per_pick_us(pick, max(1, n // rounds), costs)
                best[size, name] = min(us, best.get((size, name), us))
    return [
        {
            "analyzers": size,
            "form": form,
            **{name: round(best[size, name], 3) for name in contenders},
        }
        for size, (contenders, _, form) in built.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--picks", type=int, default=200_000, help="picks per measurement")
    parser.add_argument("--json", type=Path, default=Path("bench-results/picker.json"))
    args = parser.parse_args()
    rows = measure_sizes(SIZES, args.picks)
    small = rows[0]["logdist_pick_us"]
    header = ("analyzers", "form", "pick µs", "assign µs", "O(n) smooth µs", "vs 10")
    print("{:>9} {:>8} {:>8} {:>9} {:>14} {:>6}".format(*header))
    for r in rows:
        r["ratio_to_10"] = round(r["logdist_pick_us"] / small, 2)
        print(
            f"{r['analyzers']:>9} {r['form']:>8} {r['logdist_pick_us']:>8.2f}"
            f" {r['registry_assign_us']:>9.2f} {r['baseline_smooth_pick_us']:>14.2f}"
            f" {r['ratio_to_10']:>5.2f}x"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": platform.platform(), "python": platform.python_version(), "rows": rows}
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
