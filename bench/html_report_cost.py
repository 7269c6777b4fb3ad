"""The HTML run report's cost: the default iris run with its report and without it, side by side.

    python -m bench.html_report_cost               # 5 rounds
    python -m bench.html_report_cost --rounds 9
    python -m bench.html_report_cost --breakdown RESULTS.json   # where the time goes, in-process

Each round runs, in alternating order, two fresh ``python run_pipeline.py`` processes in empty
directories (default config: train, gate, deploy to a local endpoint, test it, keep it; the
endpoint is stopped afterwards): ``with``, this checkout, which writes
``.mlops/runs/<run_id>/report.html``; ``without``, a copy with ``bench/patches/no-html-report.diff``,
which writes none.

The cost is median(with) - median(without), in wall time from launch to exit and in CPU seconds of
the pipeline's own process (user + system, from its rusage; the endpoint's servers are other
processes). CPU time moves much less than wall time on a machine others are using.

``--breakdown RESULTS.json`` draws the report of that run (a results JSON of a default run) in
fresh interpreters that first import what the CLI imports, and times each part of it: jinja2 and
the module, the template's compilation, pygal's import, drawing the page (charts, template)
and writing it. The minimum over the runs is the cost on a machine nobody else is using.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    machine_info,
    median,
    print_table,
    project_env,
    project_root,
    python_child_json,
    ratio,
    run_child,
    temp_dir,
    write_result,
)
from bench.pipeline_overhead import run_pipeline

KINDS = {"with": None, "without": "bench/patches/no-html-report.diff"}
TARGET_SECONDS = 0.5


def run_once(root: Any, workdir: Any) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = run_pipeline(root, workdir, timed=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pipeline process, reaped by run_child
    outcome["cpu_seconds"] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3)
    return outcome


BREAKDOWN_CHILD = """
import json, sys, time
import pipeline.cli, pipeline.operations, pipeline.run.orchestrator  # what a run has imported by its end
from pipeline.reporting.results import Results
results = Results.model_validate(json.load(open(sys.argv[1])))
marks = [("start", time.perf_counter(), time.process_time())]
def mark(name):
    marks.append((name, time.perf_counter(), time.process_time()))
from pipeline.reporting import html_report
mark("import jinja2 and html_report")
html_report._template()
mark("compile the template")
html_report._import_plotting()
mark("import pygal")
page = html_report.render_report(results, [])
mark("draw the page (2 charts, template)")
html_report.write_html_report(results, [], [("bench", sys.argv[2])])
mark("draw and write it again (warm)")
parts = {name: [round(wall - marks[i][1], 4), round(cpu - marks[i][2], 4)]
         for i, (name, wall, cpu) in enumerate(marks[1:])}
print("BENCH_JSON " + json.dumps({"parts": parts, "bytes": len(page.encode())}))
"""


def breakdown(results_file: Path, runs: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with temp_dir("bench-html-breakdown-") as workdir:
        for _ in range(runs):
            run = run_child([sys.executable, "-c", BREAKDOWN_CHILD, str(results_file), str(workdir / "report.html")],
                            env=project_env(REPO), cwd=workdir, timeout=300)
            if run["returncode"] != 0:
                raise RuntimeError(run["stderr"][-2000:])
            samples.append(python_child_json(run["stdout"]))
    names = list(samples[0]["parts"])
    table = {name: {"wall_min": min(s["parts"][name][0] for s in samples),
                    "wall_median": median([s["parts"][name][0] for s in samples]),
                    "cpu_min": min(s["parts"][name][1] for s in samples),
                    "cpu_median": median([s["parts"][name][1] for s in samples])} for name in names}
    first = [name for name in names if not name.startswith("draw and write it again")]
    result = {"benchmark": "html_report_breakdown", "machine": machine_info(), "runs": runs,
              "results_file": str(results_file), "parts": table, "bytes": samples[0]["bytes"],
              "first_report_wall_min": round(sum(table[name]["wall_min"] for name in first), 3),
              "first_report_cpu_min": round(sum(table[name]["cpu_min"] for name in first), 3),
              "first_report_cpu_median": round(sum(table[name]["cpu_median"] for name in first), 3)}
    write_result("html_report_breakdown", result)
    print_table(f"The report of {results_file.name}, part by part ({runs} fresh interpreters; seconds)",
                ["part", "wall min", "wall median", "CPU min", "CPU median"],
                [[name, row["wall_min"], row["wall_median"], row["cpu_min"], row["cpu_median"]]
                 for name, row in table.items()])
    print(f"the first report of a process: {result['first_report_wall_min']} s wall, "
          f"{result['first_report_cpu_min']} s CPU at best ({result['first_report_cpu_median']} s CPU median); "
          f"{result['bytes']} bytes")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="The default run with and without its HTML report")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default="html_report_cost")
    parser.add_argument("--breakdown", type=Path, metavar="RESULTS_JSON",
                        help="time the parts of drawing this run's report instead")
    args = parser.parse_args(argv)
    if args.breakdown:
        if not args.breakdown.is_file() or "run_id" not in json.loads(args.breakdown.read_text()):
            raise SystemExit(f"--breakdown {args.breakdown}: expected the results JSON of a run")
        return breakdown(args.breakdown.resolve(), max(args.rounds, 3))
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    started = time.perf_counter()
    with temp_dir("bench-html-report-") as workdir:
        roots = {kind: project_root(patch, workdir) for kind, patch in KINDS.items()}
        for kind in KINDS:  # warm the page cache: the first run of anything is slower
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
