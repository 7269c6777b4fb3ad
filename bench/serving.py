"""Serving: the local endpoint against MLflow's scoring server and against the HTTP stack's own ceiling.

    python -m bench.serving                   # ~10 s per load run, all three models
    python -m bench.serving --quick           # 3 s runs, one startup sample
    python -m bench.serving --models logistic_regression --no-mlflow --rounds 5 --quick
                                              # the stack ratios alone (endpoint and bake / hello world)
    python -m bench.serving --compare-patch bench/patches/X.diff   # a proposed project change as a
                                              # further server, side by side in the same session

For each model (logistic regression, a 100-tree random forest and gradient boosting, fitted
on iris with the project's own recipe), both servers serve the *same fitted object*
(joblib for the endpoint, ``mlflow.sklearn.save_model`` of it for MLflow) and get
the same wrk load (bench/post.lua): single-row requests at 1 and 8 clients and
1,000-row requests at 1 client. Startup is launch -> first 200 on /ping; memory is
the resident memory of the whole process tree after warm-up (PSS, and RSS summed).

The endpoint runs in its default configuration, as a deployment starts it (``launch_server``): metrics on
(``PROMETHEUS_MULTIPROC_DIR``), capture at 100% (``capture_max_mb`` 100), no bake. Beside it, in the same
session and taking turns with it, run:

- ``hello``: the HTTP stack's ceiling, ``bench/hello_world.py`` -- gunicorn's master and 2 uvicorn workers on
  uvloop and httptools answering a constant (single rows only). endpoint / hello is the share of the stack's
  rate the endpoint keeps: the rest is what the endpoint does per request.
- ``bake`` (logistic regression only): the endpoint during a 90/10 bake (the pointer's ``split``: 10% of the
  requests answered by a candidate fitted with ``C`` 0.05), metrics and capture on (single rows only).

Each server gets the body format it answers fastest (``FORMATS``): single rows as JSON
(``{"inputs": [[...]]}`` for MLflow, its fastest JSON shape; ``[[...]]`` for the endpoint), 1,000-row
bodies as CSV (with the header row MLflow's pandas parser requires; headerless, SageMaker's contract,
for the endpoint). MLflow's environment has uvloop and httptools, as the endpoint's has
(bench/mlflow_env.py).

The machine may be shared: the servers take turns in alternating order, each measured run
first waits (bounded) for other work to quieten, and records the cores other work used
during it and the requests per CPU-second of the server's own processes. ``--rounds N`` repeats
every load run N times; a ratio is then the median of the rounds' ratios, each taken within a round.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench import mlflow_env
from bench.common import (
    BENCH,
    HOST,
    REPO,
    WRK_MISSING,
    Server,
    children_cpu,
    free_port,
    http_request,
    load_generator_name,
    machine_info,
    median,
    print_table,
    project_env,
    project_root,
    python_child_json,
    ratio,
    run_child,
    run_load,
    system_cpu,
    temp_dir,
    tree_cpu_seconds,
    tree_memory,
    wait_for_quiet,
    write_result,
    wrk_path,
)

MODELS = ("logistic_regression", "random_forest", "gradient_boosting")
# Ours / the hello world's single-row rate at 8 clients, logistic regression: the endpoint in its default
# configuration, and during a 90/10 bake.
STACK_TARGETS = {"endpoint": 0.5, "bake": 0.45}
SINGLE_ONLY = {"hello", "bake"}  # servers measured on single rows only
CANDIDATE_HYPERPARAMETERS = {"C": 0.05}  # the bake's candidate: a different model, as in bench.rollout
SCENARIOS = (  # name, payload, connections
    ("single_c1", "single", 1),
    ("single_c8", "single", 8),
    ("rows1000_c1", "rows1000", 1),
)
TARGETS = {  # ours / MLflow, each given its fastest body format
    ("logistic_regression", "single_c8"): 10.0,
    ("logistic_regression", "single_c1"): 6.0,
    ("logistic_regression", "rows1000_c1"): 3.5,
}
# The body each server answers fastest, per payload: (format, content type).
FORMATS = {  # the hello world and the bake get the endpoint's
    "endpoint": {"single": ("json", "application/json"), "rows1000": ("csv", "text/csv")},
    "mlflow": {"single": ("json-inputs", "application/json"), "rows1000": ("csv-with-header", "text/csv")},
}
P99_TARGET_MS = 4.0
STARTUP_TARGET = 0.3
MEMORY_TARGET = 0.5


# --------------------------------------------------------------------------- models and payloads
def fit_models(workdir: Path, models: list[str], with_mlflow: bool = True) -> dict[str, dict[str, Any]]:
    """Fit with the project's recipe; write joblib + pointer (endpoint) and an MLflow model of the same object."""
    sys.path.insert(0, str(REPO))
    from sklearn.datasets import load_iris

    from pipeline.container import train as recipe

    frame = load_iris(as_frame=True).frame
    features, labels = frame.drop(columns=["target"]), frame["target"]
    X_train, X_test, y_train, _ = recipe.split(features, labels, 0.2, 42)
    single = X_test.iloc[[0]]
    rows1000 = pd.concat([X_test] * (1000 // len(X_test) + 1)).iloc[:1000]
    fitted = {}
    for model_type in models:
        model = recipe.build_estimator(model_type, {}, 42).fit(X_train, y_train)
        base = workdir / model_type
        model_dir = base / "model"
        path = recipe.save_model(model, model_dir)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        spec = {"version": f"bench-{model_type}", "model_dir": str(model_dir), "sha256": sha, "max_payload_mb": 6.0}
        pointer = base / "pointer.json"  # no capture directory: capture off (bench.resistance, bench.stacks)
        pointer.write_text(json.dumps(spec))
        # The default configuration, as the local backend points a deployed version: capture at 100% (with
        # PROMETHEUS_MULTIPROC_DIR set by endpoint_server, metrics on).
        default = {**spec, "client_timeout_seconds": 5.0, "capture_dir": str(base / "capture"),
                   "capture_percent": 100, "capture_max_mb": 100.0}
        default_pointer = base / "default-pointer.json"
        default_pointer.write_text(json.dumps(default))
        bake_pointer = None
        if model_type == "logistic_regression":  # a 90/10 bake: the candidate answers 10% of the requests
            candidate = recipe.build_estimator(model_type, CANDIDATE_HYPERPARAMETERS, 42).fit(X_train, y_train)
            candidate_path = recipe.save_model(candidate, base / "candidate")
            bake = {**default, "split": {"mode": "split", "percent": 10, "candidate": {
                **default, "version": f"bench-{model_type}-candidate", "model_dir": str(base / "candidate"),
                "sha256": hashlib.sha256(candidate_path.read_bytes()).hexdigest()}}}
            bake_pointer = base / "bake-pointer.json"
            bake_pointer.write_text(json.dumps(bake))
        mlflow_dir = base / "mlflow-model"
        if with_mlflow:
            mlflow_env.save_model(path, mlflow_dir)
        bodies: dict[str, dict[str, tuple[Path, str]]] = {}
        for payload, frame_rows in (("single", single), ("rows1000", rows1000)):
            bodies[payload] = {}
            for kind, formats in FORMATS.items():
                name, content_type = formats[payload]
                path = base / f"{payload}-{name}.body"
                path.write_text(_body(frame_rows, name))
                bodies[payload][kind] = (path, content_type)
        fitted[model_type] = {"model_dir": model_dir, "pointer": pointer, "default_pointer": default_pointer,
                              "bake_pointer": bake_pointer, "mlflow_dir": mlflow_dir, "bodies": bodies,
                              "expected_1000": model.predict(rows1000).tolist()}
    return fitted


def _body(rows: pd.DataFrame, name: str) -> str:
    if name == "json":
        return json.dumps(rows.to_numpy().tolist())
    if name == "json-inputs":
        return json.dumps({"inputs": rows.to_numpy().tolist()})
    return rows.to_csv(header=name == "csv-with-header", index=False)


def endpoint_server(root: Path, pointer: Path, workdir: Path, tag: str, workers: int, metrics: bool = False) -> Server:
    """The endpoint as ``launch_server`` starts it; ``metrics``: with its metrics directory (metrics on)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--config", "python:pipeline.serving.gunicorn_conf",
               "--bind", f"{HOST}:{port}", "--workers", str(workers), "--name", f"bench-{tag}",
               "pipeline.serving.app:create_app()"]  # the command pipeline/backends/local/backend.py runs
    env = project_env(root, {"MLOPS_MODEL_POINTER": str(pointer)})
    if metrics:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / f"metrics-{tag}")
    return Server(f"endpoint[{tag}]", command, env, root, workdir / f"endpoint-{tag}.log", port)


def hello_server(workdir: Path, tag: str, workers: int) -> Server:
    """The stack's ceiling: gunicorn's master and uvicorn workers answering a constant (bench/hello_world.py)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--worker-class", "bench.hello_world.HelloWorker",
               "--bind", f"{HOST}:{port}", "--workers", str(workers), "--name", f"bench-{tag}",
               "bench.hello_world:app"]
    return Server(f"hello[{tag}]", command, project_env(REPO), REPO, workdir / f"hello-{tag}.log", port)


def mlflow_server(model_dir: Path, workdir: Path, tag: str, workers: int | None) -> Server:
    port = free_port()
    command = [str(mlflow_env.MLFLOW), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
               "-p", str(port), "-h", HOST]
    if workers:
        command += ["-w", str(workers)]
    env = project_env(REPO, {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    env.pop("PYTHONPATH", None)
    # As with an activated venv: MLflow execs `uvicorn` by name.
    env["PATH"] = f"{mlflow_env.VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return Server(f"mlflow[{tag}]", command, env, workdir, workdir / f"mlflow-{tag}.log", port)


def check_answers(server: Server, body: tuple[Path, str], expected: list[Any]) -> None:
    # Marked as the pipeline's own test traffic (which MLflow ignores): a bake answers it with the serving version.
    status, _, answer = http_request(server.port, "POST", "/invocations", body[0].read_bytes(),
                                     {"Content-Type": body[1], "Accept": "application/json",
                                      "X-Mlops-Test-Traffic": "1"})
    if status != 200:
        raise RuntimeError(f"{server.name}: 1,000-row request answered {status}: {answer[:300]!r}")
    got = json.loads(answer)["predictions"]
    if got != expected:
        raise RuntimeError(f"{server.name}: predictions differ from the fitted model's")


def bench_pair(makers: dict[str, Any], bodies: dict[str, dict[str, tuple[Path, str]]], expected: list[Any],
               args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The servers side by side: startups alternate, then all stay up (an idle one costs nothing) and
    every load scenario runs on one right after the other, in alternating order, so a burst of
    foreign load on the shared machine hits all of them rather than one. ``args.rounds`` times over."""
    kinds = list(makers)
    results: dict[str, dict[str, Any]] = {kind: {"startup_samples_s": []} for kind in kinds}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {kind: {name: [] for name, _, _ in SCENARIOS} for kind in kinds}
    servers: dict[str, Server] = {}
    try:
        for attempt in range(args.startup_runs):
            for kind in (kinds if attempt % 2 == 0 else kinds[::-1]):
                server = makers[kind](f"{kind}-{attempt}").start()
                servers[kind] = server
                results[kind]["startup_samples_s"].append(round(server.wait_ready(timeout=180), 3))
                if attempt < args.startup_runs - 1:
                    server.stop()
                    del servers[kind]
                    time.sleep(0.3)
        for kind, server in servers.items():
            results[kind]["startup_s"] = median(results[kind]["startup_samples_s"])
            if kind != "hello":
                check_answers(server, bodies["rows1000"][kind], expected)
            run_load(server.port, "/invocations", *bodies["single"][kind], 8, args.warmup)
            results[kind]["memory_after_warmup"] = tree_memory(server.process.pid)
        turn = 0
        for round_index in range(args.rounds):
            for name, payload, connections in SCENARIOS:
                ordered = kinds if turn % 2 == 0 else kinds[::-1]
                turn += 1
                for kind in ordered:
                    if payload != "single" and kind in SINGLE_ONLY:
                        continue
                    server = servers[kind]
                    if payload != "single":
                        run_load(server.port, "/invocations", *bodies[payload][kind], connections,
                                 min(args.warmup, 1.0))
                    measured = measure(server, bodies[payload][kind], connections, args)
                    runs[kind][name].append(measured)
                    label = f"round {round_index + 1} " if args.rounds > 1 else ""
                    print(f"  {label}{server.name:24s} {name:12s} {measured['rps']:>9,.0f} req/s  "
                          f"p99 {measured['p99_ms']:.2f} ms  {measured['req_per_cpu_s'] or 0:>7,.0f} req/CPU-s  "
                          f"errors {measured['errors']}  (foreign load {measured['foreign_busy_cores']:.2f} cores, "
                          f"load average {measured['loadavg_1m_before']:.1f})", flush=True)
        for kind, server in servers.items():
            results[kind]["memory_after_load"] = tree_memory(server.process.pid)
    finally:
        for server in servers.values():
            server.stop()
    for kind in kinds:
        for name, measured in runs[kind].items():
            if measured:
                results[kind][name] = summary_of(measured)
    return results


def measure(server: Server, body: tuple[Path, str], connections: int, args: argparse.Namespace) -> dict[str, Any]:
    """One load run, with the server's CPU, the load generator's and the rest of the machine's (foreign load)."""
    waited, _ = wait_for_quiet(args.quiet_cores, args.quiet_wait)
    loadavg = os.getloadavg()[0]
    cpu_before = tree_cpu_seconds(server.process.pid)
    system_before, children_before = system_cpu()[0], children_cpu()
    began = time.perf_counter()
    measured = run_load(server.port, "/invocations", *body, connections, args.duration)
    wall = time.perf_counter() - began
    cpu = tree_cpu_seconds(server.process.pid) - cpu_before
    generator_cpu = children_cpu() - children_before
    foreign = system_cpu()[0] - system_before - cpu - generator_cpu
    measured["loadavg_1m_before"] = loadavg
    measured["waited_for_quiet_s"] = round(waited, 1)
    # CPU the rest of the machine (other people's work) used during the run, in cores.
    measured["foreign_busy_cores"] = round(max(0.0, foreign) / wall, 2)
    measured["load_generator_cpu_s"] = round(generator_cpu, 2)
    # Requests per CPU-second of the server's own processes: what a request costs,
    # whatever share of the cores the foreign load on a shared machine left it.
    measured["server_cpu_s"] = round(cpu, 2)
    measured["req_per_cpu_s"] = round(measured["requests"] / cpu, 1) if cpu > 0 else None
    return measured


def summary_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's runs of a server: the last run's fields, the medians over the runs, every run kept."""
    if len(runs) == 1:
        return {**runs[0], "runs": runs}
    return {**runs[-1], "runs": runs, "errors": sum(run["errors"] for run in runs),
            **{key: median([run[key] for run in runs]) for key in ("rps", "req_per_cpu_s", "p99_ms", "p50_ms",
                                                                  "foreign_busy_cores", "loadavg_1m_before")}}


def round_ratio(ours: dict[str, Any], theirs: dict[str, Any], key: str) -> float | None:
    """The median over the rounds of ours / theirs, each taken within one round (both ran a few seconds apart)."""
    pairs = zip(ours.get("runs", [ours]), theirs.get("runs", [theirs]))
    return median([ratio(mine.get(key), other.get(key)) for mine, other in pairs])


def inprocess(root: Path, model_dir: Path, body: tuple[Path, str], seconds: float) -> dict[str, Any]:
    # Run as a script (not -m from REPO, which would put this checkout's pipeline/ first on sys.path):
    # the benchmarked project's pipeline/ first, then REPO for the bench package.
    run = run_child([sys.executable, str(BENCH / "inprocess.py"), "--model-dir", str(model_dir), "--body", str(body[0]),
                     "--content-type", body[1], "--seconds", str(seconds)],
                    env=project_env(root, {"PYTHONPATH": f"{root}:{REPO}"}), cwd=root, timeout=120)
    if run["returncode"] != 0:
        raise RuntimeError(f"in-process measurement failed: {run['stderr'][-1000:]}")
    return python_child_json(run["stdout"])


# --------------------------------------------------------------------------- report
def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for model_type, per_model in results["models"].items():
        for kind in [k for k in ("endpoint", "patched") if k in per_model and "mlflow" in per_model]:
            checks += _against_mlflow(model_type, kind, per_model[kind], per_model["mlflow"])
        hello = per_model.get("hello")
        for kind in [k for k in ("endpoint", "bake", "patched") if k in per_model and hello is not None]:
            ours = per_model[kind]
            label = "" if kind == "endpoint" else f" [{kind}]"
            target = STACK_TARGETS["bake" if kind == "bake" else "endpoint"] \
                if model_type == "logistic_regression" else None
            for name in ("single_c8", "single_c1"):
                value = round_ratio(ours[name], hello[name], "rps")
                judged = target if name == "single_c8" else None
                checks.append({"model": model_type + label, "metric": f"throughput {name} (x hello world)",
                               "value": value, "target": f">= {judged}" if judged else None,
                               "met": (value is not None and value >= judged) if judged else None})
                checks.append({"model": model_type + label, "metric": f"  req per server CPU-s {name} (x hello world)",
                               "value": round_ratio(ours[name], hello[name], "req_per_cpu_s"), "target": None,
                               "met": None})
    return checks


def _against_mlflow(model_type: str, kind: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    label = "" if kind == "endpoint" else " [patched]"
    for name, _, _ in SCENARIOS:
        target = TARGETS.get((model_type, name))
        value = round_ratio(ours[name], theirs[name], "rps")
        checks.append({"model": model_type + label, "metric": f"throughput {name} (x MLflow)",
                       "value": value, "target": f">= {target}" if target else None,
                       "met": (value is not None and value >= target) if target else None})
        checks.append({"model": model_type + label, "metric": f"  req per server CPU-s {name} (x MLflow)",
                       "value": round_ratio(ours[name], theirs[name], "req_per_cpu_s"), "target": None, "met": None})
    if model_type == "logistic_regression":
        p99 = ours["single_c8"]["p99_ms"]
        checks.append({"model": model_type + label, "metric": "p99 ms single_c8 (ours)", "value": p99,
                       "target": f"<= {P99_TARGET_MS}", "met": p99 <= P99_TARGET_MS})
    value = ratio(ours["startup_s"], theirs["startup_s"])
    checks.append({"model": model_type + label, "metric": "startup to first /ping 200 (x MLflow)",
                   "value": value, "target": f"<= {STARTUP_TARGET}",
                   "met": value is not None and value <= STARTUP_TARGET})
    for basis in ("pss_mb", "rss_mb"):
        value = ratio(ours["memory_after_warmup"][basis], theirs["memory_after_warmup"][basis])
        checks.append({"model": model_type + label,
                       "metric": f"memory after warm-up, {basis[:3].upper()} (x MLflow)", "value": value,
                       "target": f"<= {MEMORY_TARGET}" if basis == "pss_mb" else None,
                       "met": (value is not None and value <= MEMORY_TARGET) if basis == "pss_mb" else None})
    return checks


def print_report(results: dict[str, Any]) -> None:
    rows = []
    for model_type, per_model in results["models"].items():
        for kind in [k for k in ("endpoint", "bake", "patched", "hello", "mlflow") if k in per_model]:
            r = per_model[kind]
            names = [n for n, _, _ in SCENARIOS if n in r]

            def get(name: str, key: str, r: dict[str, Any] = r) -> Any:
                return r[name][key] if name in r else None

            rows.append([model_type, kind, get("single_c1", "rps"), get("single_c8", "rps"),
                         get("single_c8", "p99_ms"), get("rows1000_c1", "rps"),
                         *(get(n, "req_per_cpu_s") for n, _, _ in SCENARIOS),
                         r["startup_s"], r["memory_after_warmup"]["pss_mb"], r["memory_after_warmup"]["rss_mb"],
                         round(sum(r[n].get("foreign_busy_cores", 0) for n in names) / len(names), 2),
                         sum(r[n]["errors"] for n in names)])
        for key, label in (("inprocess", "in-process"), ("inprocess_patched", "in-process [patched]")):
            for payload, measured in per_model.get(key, {}).items():
                rows.append([model_type, f"{label} {payload}", measured["calls_per_s"], None, None, None, None, None,
                             None, None, None, None, None, f"{measured['median_us']} us/call"])
    rounds = f", medians of {results['rounds']} rounds" if results.get("rounds", 1) > 1 else ""
    print_table(f"Serving ({results['load_generator']}, {results['duration_s']:g} s per run{rounds}; load average "
                f"{results['machine']['loadavg_at_start'][0]:.1f} at the start)",
                ["model", "server", "1-row c1 req/s", "1-row c8 req/s", "c8 p99 ms", "1000-row c1 req/s",
                 "1-row c1 req/CPU-s", "1-row c8 req/CPU-s", "1000-row req/CPU-s",
                 "startup s", "PSS MB", "RSS MB", "foreign cores", "errors"], rows)
    print_table("Serving: ratios against targets (medians of the rounds' ratios)",
                ["model", "metric", "value", "target", "met"],
                [[c["model"], c["metric"], c["value"], c["target"], c["met"]] for c in results["checks"]])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Local endpoint vs MLflow's scoring server and the stack's ceiling")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load before measuring")
    parser.add_argument("--startup-runs", type=int, default=3, help="launches per server for the startup median")
    parser.add_argument("--rounds", type=int, default=1, help="load runs per server and scenario, in turns "
                        "(ratios: the median of the rounds' ratios)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--workers", type=int, default=2, help="endpoint workers (the pipeline's default: 2)")
    parser.add_argument("--mlflow-workers", type=int, default=None,
                        help="MLflow uvicorn workers (default: MLflow's own default, 1)")
    parser.add_argument("--no-mlflow", action="store_true", help="leave MLflow out: the stack ratios alone")
    parser.add_argument("--no-hello", action="store_true", help="leave the hello world (and the bake) out")
    parser.add_argument("--patch", help="benchmark a copy of the project with this patch applied")
    parser.add_argument("--compare-patch", help="also run a copy of the project with this patch (comma-separated "
                        "patches) as a further server, side by side with the current one and MLflow")
    parser.add_argument("--quiet-cores", type=float, default=0.3,
                        help="before each measured run, wait until other work uses at most this many cores...")
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="...but at most this many seconds")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-up, 1 startup sample")
    parser.add_argument("--output", default="serving", help="results name (bench/results/<name>.json)")
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.startup_runs = 3.0, 1.0, 1
    if not wrk_path():
        print(WRK_MISSING, file=sys.stderr)
    mlflow_version = None if args.no_mlflow else mlflow_env.ensure()
    results: dict[str, Any] = {
        "benchmark": "serving", "machine": machine_info(), "load_generator": load_generator_name(),
        "mlflow_version": mlflow_version, "duration_s": args.duration, "warmup_s": args.warmup,
        "rounds": args.rounds, "endpoint_workers": args.workers, "formats": FORMATS,
        "mlflow_workers": args.mlflow_workers or 1, "patch": args.patch, "compare_patch": args.compare_patch,
        "endpoint_configuration": "metrics on, capture 100%, no bake (the bake: a 90/10 split, the same otherwise)",
        "models": {},
    }
    started = time.perf_counter()
    with temp_dir("bench-serving-", keep=args.keep_temp) as workdir:
        root = project_root(args.patch, workdir)
        patched_root = project_root(args.compare_patch, workdir) if args.compare_patch else None
        fitted = fit_models(workdir, [m for m in args.models.split(",") if m], with_mlflow=not args.no_mlflow)
        for model_type, info in fitted.items():
            print(f"-- {model_type}", flush=True)
            makers = {"endpoint": lambda tag, info=info: endpoint_server(root, info["default_pointer"], workdir, tag,
                                                                         args.workers, metrics=True)}
            if not args.no_mlflow:
                makers["mlflow"] = lambda tag, info=info: mlflow_server(info["mlflow_dir"], workdir, tag,
                                                                        args.mlflow_workers)
            if not args.no_hello:
                makers["hello"] = lambda tag: hello_server(workdir, tag, args.workers)
                if info["bake_pointer"] is not None:
                    makers["bake"] = lambda tag, info=info: endpoint_server(root, info["bake_pointer"], workdir, tag,
                                                                            args.workers, metrics=True)
            if patched_root is not None:
                makers["patched"] = lambda tag, info=info: endpoint_server(patched_root, info["default_pointer"],
                                                                           workdir, tag, args.workers, metrics=True)
            for kind in ("hello", "bake", "patched"):
                for payload in info["bodies"]:
                    info["bodies"][payload][kind] = info["bodies"][payload]["endpoint"]
            per_model: dict[str, Any] = bench_pair(makers, info["bodies"], info["expected_1000"], args)
            per_model["inprocess"] = {
                payload: inprocess(root, info["model_dir"], info["bodies"][payload]["endpoint"], 1.0)
                for payload in ("single", "rows1000")}
            if patched_root is not None:
                per_model["inprocess_patched"] = {
                    payload: inprocess(patched_root, info["model_dir"], info["bodies"][payload]["endpoint"], 1.0)
                    for payload in ("single", "rows1000")}
            results["models"][model_type] = per_model
    results["checks"] = summarise(results)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_result(args.output, results)
    print_report(results)
    return results


if __name__ == "__main__":
    main()
