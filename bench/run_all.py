"""Run every benchmark (``make bench``): serving, resistance, rollout, overhead, scale, predict; then one table.

    python -m bench.run_all              # the full set (~15 min on 2 cores, most of it the 1M-row scale run)
    python -m bench.run_all --quick      # shorter runs: 3 s load runs, 2 overhead rounds, 200,000 rows
    python -m bench.run_all --compare-patch all   # and the proposed changes (bench/patches/) side by side

Writes bench/results/<name>.json for each and bench/results/all.json with the checks.
"""
from __future__ import annotations

import argparse
import time
import traceback
from typing import Any

from bench import pipeline_overhead, predict, resistance, rollout, scale, serving, time_to_endpoint
from bench.common import machine_info, print_table, write_result

# Proposed changes waiting to be measured, in order. The six of docs/PERFORMANCE.md are applied to the project.
ALL_PATCHES: tuple[str, ...] = ()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=None, help="rows for the scale benchmark (default 1,000,000)")
    parser.add_argument("--patch", help="benchmark a copy of the project with these patches (comma-separated)")
    parser.add_argument("--compare-patch", help="also run a patched copy side by side in every benchmark; "
                        "'all' = every bench/patches/*.diff in the order of docs/PERFORMANCE.md")
    parser.add_argument("--only", default="serving,resistance,rollout,time_to_endpoint,scale,predict")
    args = parser.parse_args(argv)
    if args.compare_patch == "all":
        if not ALL_PATCHES:
            parser.error("no proposed patches in bench/patches/ (the measured ones are applied to the project)")
        args.compare_patch = ",".join(f"bench/patches/{name}.diff" for name in ALL_PATCHES)
    patch = (["--patch", args.patch] if args.patch else []) + \
        (["--compare-patch", args.compare_patch] if args.compare_patch else [])
    suffix = "" if not args.patch else "-patched"  # --compare-patch results go in the same files
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    plans = {
        "serving": (serving.main, [*(["--quick"] if args.quick else []), *patch, "--output", "serving" + suffix]),
        "resistance": (resistance.main, [*(["--quick"] if args.quick else []),
                                         *(["--patch", args.patch] if args.patch else []),
                                         "--output", "resistance" + suffix]),
        "rollout": (rollout.main, [*(["--quick"] if args.quick else []), *patch, "--output", "rollout" + suffix]),
        "pipeline_overhead": (pipeline_overhead.main, ["--rounds", "2" if args.quick else "3", *patch,
                                                       "--output", "pipeline_overhead" + suffix]),
        "time_to_endpoint": (time_to_endpoint.main, ["--rounds", "3" if args.quick else "5"]),
        "scale": (scale.main, ["--rows", str(rows), *patch, "--output", "scale" + suffix]),
        # this checkout's predict (no patched copy): offline against a bare script, and through the local endpoint
        "predict": (predict.main, ["--rows", str(rows), *(["--rounds", "2"] if args.quick else []),
                                   "--output", "predict" + suffix]),
    }
    summary: list[list[Any]] = []
    failed = []
    started = time.perf_counter()
    for name in [n for n in args.only.split(",") if n]:
        function, arguments = plans[name]
        print(f"\n######## bench.{name} {' '.join(arguments)}", flush=True)
        try:
            result = function(arguments)
        except Exception as err:
            traceback.print_exc()
            failed.append(f"{name}: {type(err).__name__}: {err}")
            continue
        if name == "pipeline_overhead":
            summary.append([name, "-", "pipeline wall time (x bare script)", result["ratio"], f"<= {result['target']}",
                            result["met"]])
            if result.get("patched_ratio") is not None:
                summary.append([name, "[patched]", "pipeline wall time (x bare script)", result["patched_ratio"],
                                f"<= {result['target']}", result["patched_ratio"] <= result["target"]])
        else:
            for check in result["checks"]:
                summary.append([name, check.get("model", "-"), check["metric"], check["value"], check["target"],
                                check["met"]])
    print_table("All benchmarks: ratios against their targets", ["benchmark", "model", "metric", "value",
                                                                          "target", "met"], summary)
    write_result("all" + suffix, {"machine": machine_info(), "patch": args.patch, "quick": args.quick,
                                  "checks": summary, "failed": failed,
                                  "elapsed_s": round(time.perf_counter() - started, 1)})
    for failure in failed:
        print(f"FAILED {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
