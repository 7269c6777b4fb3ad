"""The HTML run report's cost: the default iris run with its report and without it, side by side.

    python -m bench.html_report_cost               # 5 rounds
    python -m bench.html_report_cost --rounds 9

Each round runs, in alternating order, two fresh ``python run_pipeline.py`` processes in empty
directories (default config: train, gate, deploy to a local endpoint, test it, keep it; the
endpoint is stopped afterwards): ``with``, this checkout, which writes
``.mlops/runs/<run_id>/report.html``; ``without``, a copy with ``bench/patches/no-html-report.diff``,
which writes none.

The cost is median(with) - median(without), in wall time from launch to exit and in CPU seconds of
the pipeline's own process (user + system, from its rusage; the endpoint's servers are other
processes). CPU time moves much less than wall time on a machine others are using.
"""
from __future__ import annotations

import argparse
import resource
import time
from typing import Any

from bench.common import machine_info, median, print_table, project_root, ratio, temp_dir, write_result
from bench.pipeline_overhead import run_pipeline

KINDS = {"with": None, "without": "bench/patches/no-html-report.diff"}
TARGET_SECONDS = 0.5


def run_once(root: Any, workdir: Any) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = run_pipeline(root, workdir, timed=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pipeline process, reaped by run_child
    outcome["cpu_seconds"] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3)
    return outcome


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="The default run with and without its HTML report")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default="html_report_cost")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    started = time.perf_counter()
    with temp_dir("bench-html-report-") as workdir:
        roots = {kind: project_root(patch, workdir) for kind, patch in KINDS.items()}
        for kind in KINDS:  # warm the page cache and matplotlib's font cache: the first run of anything is slower
            run_once(roots[kind], workdir)
        order = list(KINDS)
        for index in range(args.rounds):
            for kind in (order if index % 2 == 0 else order[::-1]):
                runs[kind].append(run_once(roots[kind], workdir))
            print(f"  round {index + 1}: " + ", ".join(f"{kind} {runs[kind][-1]['seconds']:.2f} s "
                                                      f"({runs[kind][-1]['cpu_seconds']:.2f} s CPU)" for kind in KINDS),
                  flush=True)
        sizes = [path.stat().st_size for path in workdir.glob("run-*/.mlops/runs/*/report.html")]
    wall = {kind: median([run["seconds"] for run in runs[kind]]) for kind in KINDS}
    cpu = {kind: median([run["cpu_seconds"] for run in runs[kind]]) for kind in KINDS}
    base_wall, base_cpu = wall["without"], cpu["without"]
    results: dict[str, Any] = {
        "benchmark": "html_report_cost", "machine": machine_info(), "rounds": args.rounds, "kinds": KINDS,
        "wall_seconds": wall, "cpu_seconds": cpu,
        "wall_cost_seconds": {kind: round(wall[kind] - base_wall, 3) for kind in KINDS},
        "cpu_cost_seconds": {kind: round(cpu[kind] - base_cpu, 3) for kind in KINDS},
        "wall_ratio": {kind: ratio(wall[kind], base_wall) for kind in KINDS},
        "target_seconds": TARGET_SECONDS, "report_bytes": median(sizes), "runs": runs,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    results["met"] = results["wall_cost_seconds"]["with"] <= TARGET_SECONDS
    write_result(args.output, results)
    print_table("The default run with and without its HTML report (medians of rounds; cost = kind - without)",
                ["kind", "wall s", "wall cost s", "x without", "CPU s", "CPU cost s"],
                [[kind, wall[kind], results["wall_cost_seconds"][kind], results["wall_ratio"][kind], cpu[kind],
                  results["cpu_cost_seconds"][kind]] for kind in KINDS])
    print(f"report size (median): {results['report_bytes']} bytes; target: the report costs <= {TARGET_SECONDS} s "
          f"of wall time: {'met' if results['met'] else 'NOT met'}")
    return results


if __name__ == "__main__":
    main()
