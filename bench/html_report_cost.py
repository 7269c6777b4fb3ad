"""The HTML run report's cost: the default iris run with the report and without it, side by side.

    python -m bench.html_report_cost               # 5 rounds
    python -m bench.html_report_cost --rounds 9

Each round runs, in alternating order, two fresh ``python run_pipeline.py`` processes in empty
directories (default config: train, gate, deploy to a local endpoint, test it, keep it; the
endpoint is stopped afterwards): this checkout, which writes ``.mlops/runs/<run_id>/report.html``,
and a copy with ``bench/patches/no-html-report.diff`` applied, which writes none. The cost is
median(with) - median(without), and their ratio; the report's size is read from the runs that
wrote one.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import machine_info, median, print_table, project_root, ratio, temp_dir, write_result
from bench.pipeline_overhead import run_pipeline

PATCH = "bench/patches/no-html-report.diff"
TARGET_SECONDS = 0.5


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="The default run with and without its HTML report")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default="html_report_cost")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
    started = time.perf_counter()
    with temp_dir("bench-html-report-") as workdir:
        roots = {"with": project_root(None, workdir), "without": project_root(PATCH, workdir)}
        for kind in roots:  # warm the page cache and matplotlib's font cache: the first run of anything is slower
            run_pipeline(roots[kind], workdir, timed=False)
        for index in range(args.rounds):
            for kind in (("with", "without") if index % 2 == 0 else ("without", "with")):
                runs[kind].append(run_pipeline(roots[kind], workdir, timed=False))
            print(f"  round {index + 1}: with the report {runs['with'][-1]['seconds']:.2f} s, without "
                  f"{runs['without'][-1]['seconds']:.2f} s", flush=True)
        sizes = [path.stat().st_size for path in workdir.glob("run-*/.mlops/runs/*/report.html")]
    with_s = median([run["seconds"] for run in runs["with"]])
    without_s = median([run["seconds"] for run in runs["without"]])
    cost = round(with_s - without_s, 3) if with_s is not None and without_s is not None else None
    results = {
        "benchmark": "html_report_cost", "machine": machine_info(), "rounds": args.rounds,
        "with_report_seconds": with_s, "without_report_seconds": without_s, "cost_seconds": cost,
        "ratio": ratio(with_s, without_s), "target_seconds": TARGET_SECONDS,
        "met": cost is not None and cost <= TARGET_SECONDS, "report_bytes": median(sizes),
        "pairwise_cost_seconds": [round(a["seconds"] - b["seconds"], 3) for a, b in zip(runs["with"], runs["without"])],
        "runs": runs, "elapsed_s": round(time.perf_counter() - started, 1),
    }
    write_result(args.output, results)
    print_table("The default run with and without its HTML report: wall time, launch to exit (median of rounds)",
                ["run", "seconds"],
                [["without the report", without_s], ["with the report", with_s], ["cost", cost],
                 ["ratio", results["ratio"]], ["report bytes", results["report_bytes"]],
                 ["target cost", f"<= {TARGET_SECONDS}"], ["met", results["met"]]])
    return results


if __name__ == "__main__":
    main()
