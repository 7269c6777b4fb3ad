"""Pipeline overhead: the full local pipeline against a bare scikit-learn script doing the same training.

    python -m bench.pipeline_overhead               # 3 rounds
    python -m bench.pipeline_overhead --rounds 5
    python -m bench.pipeline_overhead --patch bench/patches/X.diff   # a proposed change, side by side

Each round runs, in alternating order, three fresh processes on the same machine:
- ``python bench/bare_train.py``: iris, split, fit, the same metrics and 5-fold CV, model saved;
- ``python run_pipeline.py`` in an empty directory (default config: train, gate, deploy to
  a local gunicorn endpoint, test it, keep it), the endpoint stopped afterwards;
- the same CLI under bench/pipeline_driver.py, which times every phase (the breakdown).

The ratio is median(pipeline wall) / median(bare wall), each measured from launch to exit.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH,
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

TARGET = 1.3
PIPELINE_ENV_VARS = ("ACCURACY_THRESHOLD", "MINIMUM_ACCURACY", "AWS_REGION", "INSTANCE_TYPE", "AUTO_DEPLOY_ENABLED",
                     "ROLLBACK_ON_FAILURE", "LOG_LEVEL", "SNS_TOPIC_ARN", "SLACK_WEBHOOK_URL", "SMTP_HOST",
                     "MLOPS_ENDPOINT_TOKEN")


def clean_env(root: Path, pythonpath: str | None = None) -> dict[str, str]:
    env = project_env(root, {"PYTHONPATH": pythonpath or str(root)})
    for name in PIPELINE_ENV_VARS:
        env.pop(name, None)
    return env


def stop_endpoints(store: Path) -> None:
    """Stop every endpoint server the pipeline left running under ``store`` (they detach by design)."""
    for pidfile in store.glob("endpoints/*/*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            os.killpg(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _mentioning(str(store)):
        time.sleep(0.05)
    for pid in _mentioning(str(store)):  # whatever did not stop: only processes naming our temp store
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def run_bare(root: Path, workdir: Path, extra: list[str] | None = None) -> dict[str, Any]:
    out = workdir / f"bare-{time.monotonic_ns()}"
    out.mkdir()
    launched = time.time()
    run = run_child([sys.executable, str(BENCH / "bare_train.py"), "--out", str(out), *(extra or [])],
                    env=clean_env(root), cwd=workdir, timeout=600)
    if run["returncode"] != 0:
        raise RuntimeError(f"bare script failed: {run['stderr'][-1500:]}")
    data = python_child_json(run["stdout"])
    data["phases"]["interpreter start"] = data["t0_wall"] - launched
    return {"seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"], **data}


def run_pipeline(root: Path, workdir: Path, timed: bool, extra: list[str] | None = None) -> dict[str, Any]:
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    run_dir.mkdir()
    store = run_dir / ".mlops"
    results_file = run_dir / "results.json"
    cli_args = ["--store-dir", str(store), "--output-file", str(results_file), "--log-file",
                str(run_dir / "pipeline.log"), *(extra or [])]
    timings_file = run_dir / "timings.json"
    if timed:
        command = [sys.executable, str(BENCH / "pipeline_driver.py"), str(timings_file), "--", *cli_args]
    else:
        command = [sys.executable, str(root / "run_pipeline.py"), *cli_args]
    launched = time.time()
    try:
        run = run_child(command, env=clean_env(root), cwd=run_dir, timeout=600)
    finally:
        stop_endpoints(store)
    if run["returncode"] != 0:
        raise RuntimeError(f"pipeline exited {run['returncode']}: {run['stdout'][-1500:]} {run['stderr'][-1500:]}")
    results = json.loads(results_file.read_text())
    outcome = {"seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
               "status": results["pipeline_status"], "accuracy": results["summary"]["training_accuracy"],
               "testing_passed": results["summary"]["testing_passed"]}
    if timed:
        timings = json.loads(timings_file.read_text())
        outcome["interpreter_start"] = timings["t0_wall"] - launched
        outcome["imports"] = timings["imports"]
        outcome["main_end"] = timings["main_end"]
        outcome["records"] = timings["records"]
    return outcome


def breakdown(timed_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median seconds per phase over the timed runs, in the order the phases started."""
    per_label: dict[tuple[str, int], list[float]] = {}
    first_start: dict[tuple[str, int], float] = {}
    for run in timed_runs:
        sums: dict[tuple[str, int], float] = {}
        for label, depth, seconds, start in run["records"]:
            key = (label, depth)
            sums[key] = sums.get(key, 0.0) + seconds
            first_start[key] = min(first_start.get(key, start), start)
        for key, value in sums.items():
            per_label.setdefault(key, []).append(value)
    rows = [{"phase": "interpreter start", "depth": 0, "seconds": median([r["interpreter_start"] for r in timed_runs])},
            {"phase": "imports (pipeline.cli, orchestrator)", "depth": 0,
             "seconds": median([r["imports"] for r in timed_runs])}]
    for key in sorted(per_label, key=lambda k: first_start[k]):
        label, depth = key
        if label == "notify" and depth > 0:
            continue  # counted inside the phase that notified
        rows.append({"phase": label, "depth": depth, "seconds": median(per_label[key])})
    # Per run, then the median: medians of separate phases do not add up to a median total.
    inside, after = [], []
    for run in timed_runs:
        top = sum(seconds for _, depth, seconds, _ in run["records"] if depth == 0)
        inside.append(run["main_end"] - run["imports"] - top)
        after.append(run["seconds"] - run["interpreter_start"] - run["main_end"])
    rows.append({"phase": "other, inside main (click, store.start_run, ...)", "depth": 0, "seconds": median(inside)})
    rows.append({"phase": "interpreter exit (module teardown)", "depth": 0, "seconds": median(after)})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Full local pipeline vs a bare scikit-learn script")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--patch", help="benchmark a copy of the project with this patch applied")
    parser.add_argument("--compare-patch", help="also run a patched copy in every round, side by side")
    parser.add_argument("--output", default="pipeline_overhead")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --set for the pipeline runs")
    args = parser.parse_args(argv)
    extra = [item for setting in args.settings for item in ("--set", setting)]
    bare_runs: list[dict[str, Any]] = []
    plain_runs: list[dict[str, Any]] = []
    timed_runs: list[dict[str, Any]] = []
    patched_runs: list[dict[str, Any]] = []
    patched_timed: list[dict[str, Any]] = []
    started = time.perf_counter()
    with temp_dir("bench-overhead-") as workdir:
        root = project_root(args.patch, workdir)
        patched_root = project_root(args.compare_patch, workdir) if args.compare_patch else None
        run_bare(root, workdir)  # warm the page cache for both: the first run of anything is slower
        run_pipeline(root, workdir, timed=False, extra=extra)
        kinds = ["bare", "plain", "timed"] + (["patched", "patched-timed"] if patched_root else [])
        for index in range(args.rounds):
            for kind in (kinds if index % 2 == 0 else kinds[::-1]):
                if kind == "bare":
                    bare_runs.append(run_bare(root, workdir))
                elif kind.startswith("patched"):
                    assert patched_root is not None
                    (patched_timed if kind.endswith("timed") else patched_runs).append(
                        run_pipeline(patched_root, workdir, timed=kind.endswith("timed"), extra=extra))
                else:
                    (timed_runs if kind == "timed" else plain_runs).append(
                        run_pipeline(root, workdir, timed=kind == "timed", extra=extra))
            print(f"  round {index + 1}: bare {bare_runs[-1]['seconds']:.2f} s, pipeline "
                  f"{plain_runs[-1]['seconds']:.2f} s, timed pipeline {timed_runs[-1]['seconds']:.2f} s" +
                  (f", patched {patched_runs[-1]['seconds']:.2f} s" if patched_runs else ""), flush=True)
    bare_s = median([r["seconds"] for r in bare_runs])
    pipeline_s = median([r["seconds"] for r in plain_runs])
    value = ratio(pipeline_s, bare_s)
    bare_phases = {name: median([r["phases"][name] for r in bare_runs]) for name in bare_runs[0]["phases"]}
    results = {
        "benchmark": "pipeline_overhead", "machine": machine_info(), "patch": args.patch, "rounds": args.rounds,
        "settings": args.settings, "bare_seconds": bare_s, "pipeline_seconds": pipeline_s,
        "timed_pipeline_seconds": median([r["seconds"] for r in timed_runs]),
        "ratio": value, "target": TARGET, "met": value is not None and value <= TARGET,
        "accuracy_bare": bare_runs[0]["accuracy"], "accuracy_pipeline": plain_runs[0]["accuracy"],
        "bare_phases": bare_phases, "pipeline_breakdown": breakdown(timed_runs),
        "runs": {"bare": bare_runs, "pipeline": plain_runs, "timed": [{k: v for k, v in r.items() if k != "records"}
                                                                     for r in timed_runs]},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if patched_runs:
        patched_s = median([r["seconds"] for r in patched_runs])
        results["compare_patch"] = args.compare_patch
        results["patched_seconds"] = patched_s
        results["patched_ratio"] = ratio(patched_s, bare_s)
        results["patched_breakdown"] = breakdown(patched_timed)
        results["runs"]["patched"] = patched_runs
    write_result(args.output, results)
    print_table("Pipeline overhead: wall time, launch to exit (median of rounds)", ["run", "seconds", "x bare"],
                [["bare scikit-learn script", bare_s, 1.0], ["full local pipeline", pipeline_s, value],
                 *([["full local pipeline [patched]", results["patched_seconds"],
                     results["patched_ratio"]]] if patched_runs else []),
                 ["target", None, f"<= {TARGET}"], ["met", None, results["met"]]])
    print_table("Bare script, per phase", ["phase", "seconds"], [[k, v] for k, v in bare_phases.items()])
    print_table("Pipeline, per phase (timed runs; nested phases indented)", ["phase", "seconds"],
                [["  " * r["depth"] + r["phase"], r["seconds"]] for r in results["pipeline_breakdown"]])
    if patched_runs:
        print(f"[patched] = this project with {args.compare_patch}")
        print_table("Patched pipeline, per phase", ["phase", "seconds"],
                    [["  " * r["depth"] + r["phase"], r["seconds"]] for r in results["patched_breakdown"]])
    return results


if __name__ == "__main__":
    main()
