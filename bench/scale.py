"""Scale: a synthetic 1,000,000 x 20 CSV through the training phase and the endpoint accuracy test.

    python -m bench.scale                      # 1,000,000 rows (the CSV is generated once, cached)
    python -m bench.scale --rows 200000        # a quick run
    python -m bench.scale --patch bench/patches/X.diff   # a proposed change, side by side

1. Training phase: the pipeline's ``TrainingPipeline.run`` (load + validate, split, fit,
   evaluate with 5-fold CV, save model / metrics / held-out rows / manifest) against
   ``bench/bare_train.py --csv`` (pandas.read_csv + the same split, fit, metrics, CV and
   joblib.dump). Each is a fresh process: wall time of the phase and the process's peak
   RSS (wait4). test_size is 0.1, so 1,000,000 rows leave 100,000 held-out rows.
2. Endpoint accuracy test: the trained model served by the local endpoint (gunicorn, the
   backend's command); the orchestrator's test step sends every held-out row through it.
   Reported as rows/s, beside the in-process rate of parse + predict + serialize for the
   same batch bodies (the bound for any server), and the tester's own body formatting rate.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH,
    CACHE_DIR,
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
from bench.serving import endpoint_server

TIME_TARGET = 1.2
MEMORY_TARGET = 1.2
ROWS_PER_S_TARGET = 500_000
FEATURES = 20


def synthetic_csv(rows: int, seed: int = 7) -> Path:
    """``rows`` x 20 features + a binary label, 6 significant digits (generated once, then cached)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"synthetic-{rows}x{FEATURES}-seed{seed}.csv"
    if path.is_file():
        return path
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    print(f"generating {path.name} ...", flush=True)
    X, y = make_classification(n_samples=rows, n_features=FEATURES, n_informative=10, n_redundant=4,
                               n_classes=2, class_sep=0.8, random_state=seed)
    frame = pd.DataFrame(X.astype(np.float64), columns=[f"f{i}" for i in range(FEATURES)])
    frame["target"] = y
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.rename(path)
    return path


def train_pipeline(root: Path, csv: Path, store: Path, test_size: float) -> dict[str, Any]:
    run = run_child([sys.executable, str(BENCH / "scale_train.py"), str(csv), str(store), "--test-size",
                     str(test_size)], env=project_env(root), cwd=store.parent, timeout=3600)
    if run["returncode"] != 0:
        raise RuntimeError(f"pipeline training failed: {run['stderr'][-2000:]}")
    return {"process_seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"], **python_child_json(run["stdout"])}


def train_bare(csv: Path, workdir: Path, test_size: float) -> dict[str, Any]:
    out = workdir / f"bare-{time.monotonic_ns()}"
    out.mkdir()
    run = run_child([sys.executable, str(BENCH / "bare_train.py"), "--csv", str(csv), "--test-size", str(test_size),
                     "--out", str(out)], env=project_env(REPO), cwd=workdir, timeout=3600)
    if run["returncode"] != 0:
        raise RuntimeError(f"bare training failed: {run['stderr'][-2000:]}")
    data = python_child_json(run["stdout"])
    phases = data["phases"]
    data["training_seconds"] = phases["total_in_process"] - phases["imports"]
    return {"process_seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"], **data}


def endpoint_test(root: Path, job: dict[str, Any], workdir: Path, settings: list[str]) -> dict[str, Any]:
    job_dir = Path(job["job_dir"])
    pointer = workdir / "scale-pointer.json"
    pointer.write_text(json.dumps({"version": "scale", "model_dir": str(job_dir / "model"),
                                   "sha256": job["model_sha256"], "max_payload_mb": 6.0}))
    server = endpoint_server(root, pointer, workdir, "scale", workers=2)
    try:
        server.start()
        startup = server.wait_ready(timeout=120)
        command = [sys.executable, str(BENCH / "scale_endpoint.py"), str(job_dir), server.url, "scale"]
        for setting in settings:
            command += ["--set", setting]
        run = run_child(command, env=project_env(root), cwd=workdir, timeout=1800)
    finally:
        server.stop()
    if run["returncode"] != 0:
        raise RuntimeError(f"endpoint test failed: {run['stderr'][-2000:]}")
    return {"server_startup_s": startup, **python_child_json(run["stdout"])}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="1M-row training and endpoint accuracy test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1, help="training runs of each kind (alternating)")
    parser.add_argument("--test-size", type=float, default=0.1)
    parser.add_argument("--patch", help="benchmark a copy of the project with this patch applied")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=JSON",
                        help="config override for the endpoint test, e.g. test_batch_size=5000")
    parser.add_argument("--compare-patch", help="also train and test with a patched copy, side by side")
    parser.add_argument("--skip-training-baseline", action="store_true")
    parser.add_argument("--output", default="scale")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    csv = synthetic_csv(args.rows)
    pipeline_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    with temp_dir("bench-scale-") as workdir:
        root = project_root(args.patch, workdir)
        patched_root = project_root(args.compare_patch, workdir) if args.compare_patch else None
        patched_runs: list[dict[str, Any]] = []
        kinds = ["bare", "pipeline"] + (["patched"] if patched_root else [])
        for index in range(args.rounds):
            order = kinds if index % 2 == 0 else kinds[::-1]
            for kind in order:
                if kind == "bare" and args.skip_training_baseline:
                    continue
                if kind == "patched":
                    assert patched_root is not None
                    store = workdir / f"store-patched-{index}"
                    store.mkdir()
                    patched_runs.append(train_pipeline(patched_root, csv, store, args.test_size))
                    print(f"  patched training  {patched_runs[-1]['training_seconds']:.2f} s, "
                          f"peak {patched_runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
                elif kind == "bare":
                    bare_runs.append(train_bare(csv, workdir, args.test_size))
                    print(f"  bare training     {bare_runs[-1]['training_seconds']:.2f} s, "
                          f"peak {bare_runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
                else:
                    store = workdir / f"store-{index}"
                    store.mkdir()
                    pipeline_runs.append(train_pipeline(root, csv, store, args.test_size))
                    print(f"  pipeline training {pipeline_runs[-1]['training_seconds']:.2f} s, "
                          f"peak {pipeline_runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
        endpoint = endpoint_test(root, pipeline_runs[-1], workdir, args.settings)
        patched_endpoint = endpoint_test(patched_root, patched_runs[-1], workdir, args.settings) \
            if patched_root is not None else None
    pipeline_s = median([r["training_seconds"] for r in pipeline_runs])
    pipeline_mb = median([r["peak_rss_mb"] for r in pipeline_runs])
    bare_s = median([r["training_seconds"] for r in bare_runs]) if bare_runs else None
    bare_mb = median([r["peak_rss_mb"] for r in bare_runs]) if bare_runs else None
    time_ratio, memory_ratio = ratio(pipeline_s, bare_s), ratio(pipeline_mb, bare_mb)
    comparison_s = median([r["champion_comparison_seconds"] for r in pipeline_runs])
    comparison_ratio = ratio(comparison_s, pipeline_s)
    rows_per_s = endpoint["endpoint_rows_per_s"]
    results = {
        "benchmark": "scale", "machine": machine_info(), "patch": args.patch, "rows": args.rows,
        "features": FEATURES, "csv": str(csv), "csv_mb": round(csv.stat().st_size / 1e6, 1),
        "test_size": args.test_size, "settings": args.settings,
        "training": {"pipeline_seconds": pipeline_s, "bare_seconds": bare_s, "time_ratio": time_ratio,
                     "pipeline_peak_rss_mb": pipeline_mb, "bare_peak_rss_mb": bare_mb, "memory_ratio": memory_ratio,
                     "pipeline_runs": pipeline_runs, "bare_runs": bare_runs},
        "endpoint_test": endpoint,
        "champion_comparison": {"seconds": comparison_s, "x_training_phase": comparison_ratio},
        "checks": [
            {"metric": "training time (x bare)", "value": time_ratio, "target": f"<= {TIME_TARGET}",
             "met": time_ratio is not None and time_ratio <= TIME_TARGET},
            {"metric": "training peak memory (x bare)", "value": memory_ratio, "target": f"<= {MEMORY_TARGET}",
             "met": memory_ratio is not None and memory_ratio <= MEMORY_TARGET},
            {"metric": "endpoint accuracy test, rows/s", "value": rows_per_s, "target": f">= {ROWS_PER_S_TARGET:,}",
             "met": bool(rows_per_s and rows_per_s >= ROWS_PER_S_TARGET)},
        ],
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if patched_endpoint is not None:
        patched_s = median([r["training_seconds"] for r in patched_runs])
        patched_mb = median([r["peak_rss_mb"] for r in patched_runs])
        results["compare_patch"] = args.compare_patch
        results["patched"] = {"training_seconds": patched_s, "peak_rss_mb": patched_mb,
                              "time_ratio": ratio(patched_s, bare_s), "memory_ratio": ratio(patched_mb, bare_mb),
                              "runs": patched_runs, "endpoint_test": patched_endpoint}
        prate = patched_endpoint["endpoint_rows_per_s"]
        results["checks"] += [
            {"metric": "[patched] training time (x bare)", "value": ratio(patched_s, bare_s),
             "target": f"<= {TIME_TARGET}", "met": bool(bare_s) and patched_s / bare_s <= TIME_TARGET},
            {"metric": "[patched] training peak memory (x bare)", "value": ratio(patched_mb, bare_mb),
             "target": f"<= {MEMORY_TARGET}", "met": bool(bare_mb) and patched_mb / bare_mb <= MEMORY_TARGET},
            {"metric": "[patched] endpoint accuracy test, rows/s", "value": prate,
             "target": f">= {ROWS_PER_S_TARGET:,}", "met": bool(prate and prate >= ROWS_PER_S_TARGET)},
        ]
    write_result(args.output, results)
    steps = pipeline_runs[-1]["steps"]
    size_mb = csv.stat().st_size / 1e6
    print_table(f"Scale: training phase ({args.rows:,} rows x {FEATURES} features, {size_mb:.0f} MB CSV)",
                ["run", "seconds", "peak RSS MB", "time x bare", "memory x bare"],
                [["bare pandas + scikit-learn", bare_s, bare_mb, 1.0, 1.0],
                 ["pipeline TrainingPipeline.run", pipeline_s, pipeline_mb, time_ratio, memory_ratio],
                 *([["[patched] TrainingPipeline.run", results["patched"]["training_seconds"],
                     results["patched"]["peak_rss_mb"], results["patched"]["time_ratio"],
                     results["patched"]["memory_ratio"]]] if patched_endpoint else [])])
    rows = [[f"pipeline {name}", seconds] for name, seconds in steps.items()]
    if bare_runs:
        rows += [[f"bare {name}", seconds] for name, seconds in bare_runs[-1]["phases"].items()]
    print_table("Scale: training steps (last run)", ["step", "seconds"], rows)
    print_table("Scale: the champion comparison the gate adds (the job as its own champion)",
                ["measure", "seconds", "x training phase"],
                [["load + one prediction pass of each model + row hashes + paired test", comparison_s,
                  comparison_ratio]])
    inproc = endpoint["inprocess_tester_bodies"]
    text = endpoint.get("inprocess_text_bodies") or {}
    print_table(f"Scale: endpoint accuracy test ({endpoint['rows']:,} held-out rows, batches of "
                f"{endpoint['batch_rows']})", ["measure", "rows/s", "note"],
                [["through the endpoint (check_predictions)", rows_per_s,
                  f"{endpoint['check_predictions_s']:.2f} s, passed={endpoint['passed']}"],
                 ["in-process parse+predict+serialize, tester's bodies", inproc["rows_per_s"],
                  f"parse {inproc['parse_s']:.3f} s, predict {inproc['predict_s']:.3f} s, "
                  f"serialize {inproc['serialize_s']:.3f} s, {inproc['bytes'] / 1e6:.1f} MB"],
                 ["in-process, bodies cut from held-out CSV text", text.get("rows_per_s"),
                  f"{text.get('bytes', 0) / 1e6:.1f} MB"],
                 ["tester's body formatting (to_csv) alone", endpoint["tester_body_formatting_rows_per_s"], ""]])
    if patched_endpoint is not None:
        pinproc = patched_endpoint["inprocess_tester_bodies"]
        print_table(f"Scale: [patched] endpoint accuracy test (batches of {patched_endpoint['batch_rows']})",
                    ["measure", "rows/s", "note"],
                    [["through the endpoint (check_predictions)", patched_endpoint["endpoint_rows_per_s"],
                      f"{patched_endpoint['check_predictions_s']:.2f} s, passed={patched_endpoint['passed']}"],
                     ["in-process parse+predict+serialize, same bodies", pinproc["rows_per_s"],
                      f"parse {pinproc['parse_s']:.3f} s, predict {pinproc['predict_s']:.3f} s, "
                      f"serialize {pinproc['serialize_s']:.3f} s"]])
    print_table("Scale: ratios against targets", ["metric", "value", "target", "met"],
                [[c["metric"], c["value"], c["target"], c["met"]] for c in results["checks"]])
    return results


if __name__ == "__main__":
    main()
