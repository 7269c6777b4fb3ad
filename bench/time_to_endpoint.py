"""Time to a verified endpoint: the pipeline, a bare training script, and MLflow's manual path, side by side.

    python -m bench.time_to_endpoint                # 5 rounds (the MLflow venv is created on first use)
    python -m bench.time_to_endpoint --rounds 7 --no-breakdown

Each round runs the paths below in alternating order, each from a clean directory, each timed from the launch
of its first process to its last byte (medians of ``--rounds``; one untimed run of each first warms the page
cache):

- **bare**: ``bench/bare_train.py`` (iris, stratified split, StandardScaler + LogisticRegression with the
  pipeline's hyperparameters and seed, the same hold-out metrics and 5-fold CV, ``joblib.dump``). It deploys
  nothing: the floor of any path that trains this model.
- **ours**: ``run_pipeline.py`` in an empty directory with the default config: train, gate, deploy to a local
  endpoint, test it (health, parity over every held-out row, 200 requests of the performance check,
  robustness), keep it, write the results JSON, CI reports and HTML report. At exit the endpoint is tested and
  answering (stopped afterwards, untimed).
- **mlflow**: the manual path an MLflow user takes to merely a live model: one Python process runs the same
  training script and ``mlflow.sklearn.save_model``; then ``mlflow models serve -m DIR --env-manager local`` is
  polled on ``/ping`` every 10 ms until it answers 200; then one scoring request (``{"inputs": [[...]]}``, MLflow's
  fastest single-row body in ``bench/serving.py``) answers 200. MLflow gets its fastest supported set-up: the
  ``local`` environment manager (no environment is created), training and saving in one interpreter, uvloop and
  httptools installed (``bench/mlflow_env.py``), and its telemetry off.
- **ours, timed** (unless ``--no-breakdown``): the same run under ``bench/pipeline_driver.py``, which only puts
  a clock around each phase: what the run spends on imports, training, the server's start (the prestarted
  server's imports overlap training; ``test: check_health`` is what is left of its start), the tests and the
  report.

Ratios: median(ours) / median(mlflow), target <= 0.2; median(ours) / median(bare), target <= 2.0.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import mlflow_env
from bench.common import (
    BENCH,
    HOST,
    REPO,
    Server,
    free_port,
    http_request,
    machine_info,
    median,
    print_table,
    project_env,
    ratio,
    run_child,
    temp_dir,
    write_result,
)
from bench.pipeline_overhead import breakdown, run_bare, run_pipeline

MLFLOW_TARGET = 0.2
BARE_TARGET = 2.0

# The MLflow user's training script: the bare script's training, then the model saved as an MLflow model.
TRAIN_AND_SAVE = r"""
import runpy, sys
out, model_dir, bare = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = [bare, "--out", out]
runpy.run_path(bare, run_name="__main__")
import joblib, sklearn, mlflow.sklearn
mlflow.sklearn.save_model(joblib.load(out + "/model.joblib"), model_dir,
                          pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
"""
SCORING_BODY = json.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def run_mlflow(workdir: Path) -> dict[str, Any]:
    """Seconds from the training script's launch to the first scoring request's answer, and each step's share."""
    run_dir = workdir / f"mlflow-{time.monotonic_ns()}"
    run_dir.mkdir()
    env = project_env(REPO, {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{mlflow_env.VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"  # MLflow execs `uvicorn` by name
    began = time.perf_counter()
    trained = run_child([str(mlflow_env.PYTHON), "-c", TRAIN_AND_SAVE, str(run_dir), str(run_dir / "model"),
                         str(BENCH / "bare_train.py")], env=env, cwd=run_dir, timeout=600)
    if trained["returncode"] != 0:
        raise RuntimeError(f"MLflow training script failed: {trained['stderr'][-1500:]}")
    saved = time.perf_counter()
    port = free_port()
    server = Server("mlflow", [str(mlflow_env.MLFLOW), "models", "serve", "-m", str(run_dir / "model"),
                               "--env-manager", "local", "-p", str(port), "-h", HOST],
                    env, run_dir, run_dir / "mlflow.log", port).start()
    try:
        server.wait_ready(timeout=180, interval=0.01)
        ready = time.perf_counter()
        status, _, answer = http_request(port, "POST", "/invocations", SCORING_BODY,
                                         {"Content-Type": "application/json"})
        answered = time.perf_counter()
    finally:
        server.stop()
    if status != 200 or len(json.loads(answer)["predictions"]) != 1:
        raise RuntimeError(f"MLflow's scoring request answered {status}: {answer[:300]!r}")
    return {"seconds": answered - began, "train_and_save": saved - began, "serve_until_ping": ready - saved,
            "first_request": answered - ready}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Time to a verified endpoint: ours, a bare script, MLflow's path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-breakdown", action="store_true", help="skip the timed run of ours in each round")
    args = parser.parse_args(argv)
    mlflow_version = mlflow_env.ensure()
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": [], "mlflow": [], "timed": []}
    kinds = ["bare", "ours", "mlflow"] + ([] if args.no_breakdown else ["timed"])
    started = time.perf_counter()
    with temp_dir("bench-time-to-endpoint-") as workdir:
        run_bare(REPO, workdir)  # warm the page cache: the first run of anything is slower
        run_pipeline(REPO, workdir, timed=False)
        run_mlflow(workdir)
        for index in range(args.rounds):
            for kind in (kinds if index % 2 == 0 else kinds[::-1]):
                if kind == "bare":
                    runs["bare"].append(run_bare(REPO, workdir))
                elif kind == "mlflow":
                    runs["mlflow"].append(run_mlflow(workdir))
                else:
                    runs[kind].append(run_pipeline(REPO, workdir, timed=kind == "timed"))
            last = {kind: runs[kind][-1]["seconds"] for kind in ("bare", "ours", "mlflow")}
            print(f"  round {index + 1}: bare {last['bare']:.2f} s, ours {last['ours']:.2f} s, "
                  f"MLflow {last['mlflow']:.2f} s", flush=True)
    seconds = {kind: median([run["seconds"] for run in runs[kind]]) for kind in ("bare", "ours", "mlflow")}
    against_mlflow = ratio(seconds["ours"], seconds["mlflow"])
    against_bare = ratio(seconds["ours"], seconds["bare"])
    mlflow_steps = {step: median([run[step] for run in runs["mlflow"]])
                    for step in ("train_and_save", "serve_until_ping", "first_request")}
    results = {
        "benchmark": "time_to_endpoint", "machine": machine_info(), "rounds": args.rounds,
        "mlflow_version": mlflow_version, "median_seconds": seconds, "mlflow_steps": mlflow_steps,
        "ours_vs_mlflow": against_mlflow, "mlflow_target": MLFLOW_TARGET,
        "ours_vs_bare": against_bare, "bare_target": BARE_TARGET,
        "met": {"mlflow": against_mlflow is not None and against_mlflow <= MLFLOW_TARGET,
                "bare": against_bare is not None and against_bare <= BARE_TARGET},
        "checks": [
            {"metric": "time to a verified endpoint (x bare script)", "value": against_bare,
             "target": f"<= {BARE_TARGET}", "met": against_bare is not None and against_bare <= BARE_TARGET},
            {"metric": "time to a verified endpoint (x MLflow's manual path)", "value": against_mlflow,
             "target": f"<= {MLFLOW_TARGET}", "met": against_mlflow is not None and against_mlflow <= MLFLOW_TARGET}],
        "breakdown": breakdown(runs["timed"]) if runs["timed"] else None,
        "runs": {kind: [{key: value for key, value in run.items() if key != "records"} for run in values]
                 for kind, values in runs.items()},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    write_result("time_to_endpoint", results)
    print_table(f"Time to a verified endpoint: launch to the last byte (median of {args.rounds})",
                ["path", "seconds", "ours / this", "target", "met"],
                [["bare training script (deploys nothing)", seconds["bare"], against_bare, f"<= {BARE_TARGET}",
                  results["met"]["bare"]],
                 [f"MLflow {mlflow_version}: train + save_model, models serve until /ping, 1 request",
                  seconds["mlflow"], against_mlflow, f"<= {MLFLOW_TARGET}", results["met"]["mlflow"]],
                 ["ours: train, gate, deploy, test, keep, report", seconds["ours"], 1.0, None, None]])
    print_table("MLflow's path, per step", ["step", "seconds"], [[k, v] for k, v in mlflow_steps.items()])
    if results["breakdown"]:
        print_table("Ours, per phase (timed runs; nested phases indented)", ["phase", "seconds"],
                    [["  " * row["depth"] + row["phase"], row["seconds"]] for row in results["breakdown"]])
    return results


if __name__ == "__main__":
    sys.exit(0 if all(main()["met"].values()) else 1)
