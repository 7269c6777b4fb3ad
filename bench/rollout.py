"""What routing costs: an endpoint holding two models during a bake, against one holding one.

    python -m bench.rollout               # 10 rounds of 3 s runs per server and load (~10 min)
    python -m bench.rollout --quick       # 4 rounds of 2 s
    python -m bench.rollout --compare-patch bench/patches/X.diff   # a proposed change, side by side

Two logistic regressions fitted on iris with the project's recipe (``pipeline.container.train``):
the serving version (the recipe's defaults) and a candidate (``C`` 0.05, so the two really
disagree on some rows and the shadow's comparison does real work). Three endpoints run side by
side, each started as ``pipeline.backends.local.servers.launch_server`` starts one: gunicorn with
the endpoint's worker, the same number of workers (2, the pipeline's default),
``PROMETHEUS_MULTIPROC_DIR`` set (metrics on) and the pointer written as the local backend
writes it (``capture_percent`` 100, ``capture_max_mb`` 100: the pipeline's defaults). So
every server pays for metrics and capture, and the only difference between them is the
``split`` key of the pointer (``LocalBackend._point_split``):

- ``one``: the serving version alone (no ``split``);
- ``split``: ``{"mode": "split", "percent": 10, "candidate": <the candidate's spec>}``, the first
  step of a linear rollout: 10% of the requests answered by the candidate, every answer naming
  its version (a falcon middleware);
- ``shadow``: the serving version answers every request, the candidate predicts a copy after
  the answer has gone and its comparison is counted.

wrk sends the endpoint's fastest single-row body (JSON ``[[...]]``, as ``bench.serving``) at 1
and 8 clients, and 1,000-row CSV bodies at 1 client (informational). In each round the servers
take short turns one right after another, in an order that rotates every round, each run after
waiting (bounded) for the machine to quieten; a ratio is taken within a round, where the
servers saw about the same foreign load, and the median over the rounds is reported:
split / one (target >= 0.95) and shadow / one (target >= 0.6), for requests per second and
for requests per CPU-second of the server's own processes (what a request costs, whatever share
of the cores other work on a shared machine left the server). At the end each server's
/metrics is read, so the run is known to have measured what it says: the split server's
candidate answered 10% of the requests, the shadow server's candidate predicted a copy of
every one.

The load runs' rates move by tens of percent from one run to the next on a shared machine, more
than the few percent a split is expected to cost. So the same three apps are also measured in
one process (``bench/rollout_inprocess.py``): CPU per single-row request, driven through ASGI,
taking turns in short blocks. That gives what a split and a shadow add to a request in
microseconds, and two ratios that hold whatever the foreign load: the app's own (a lower bound:
the app alone costs less than a request through the server) and the projected server ratio (the
one-model server's CPU per request at 8 clients, measured above, plus what routing adds).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import (
    BENCH,
    HOST,
    REPO,
    WRK_MISSING,
    Server,
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
    temp_dir,
    write_result,
    wrk_path,
)
from bench.serving import FORMATS, _body
from bench.telemetry import measure

SERVERS = {"one": None, "split": ("split", 10), "shadow": ("shadow", 0)}  # name: pointer's split (mode, percent)
LOADS = (("single_c1", "single", 1), ("single_c8", "single", 8), ("rows1000_c1", "rows1000", 1))
TARGETS = {"split 90/10 / one model": ("split", 0.95), "shadow / one model": ("shadow", 0.6)}
TARGET_LOADS = ("single_c1", "single_c8")  # the targets are about single rows; 1,000 rows are informational
CANDIDATE_HYPERPARAMETERS = {"C": 0.05}  # a different model, not a copy: it disagrees on some rows


# --------------------------------------------------------------------------- models, pointers, servers
def fit_versions(workdir: Path) -> dict[str, Any]:
    """Two versions fitted with the project's recipe, each saved with its sha256 and input schema and
    pointed to as ``LocalBackend._write_pointer`` points to a version."""
    sys.path.insert(0, str(REPO))
    from sklearn.datasets import load_iris

    from pipeline.container import train as recipe

    frame = load_iris(as_frame=True).frame
    features, labels = frame.drop(columns=["target"]), frame["target"]
    X_train, X_test, y_train, _ = recipe.split(features, labels, 0.2, 42)
    specs, predictions = {}, {}
    rows1000 = pd.concat([X_test] * (1000 // len(X_test) + 1)).iloc[:1000]
    for version, hyperparameters in (("v-serving", {}), ("v-candidate", CANDIDATE_HYPERPARAMETERS)):
        model = recipe.build_estimator("logistic_regression", hyperparameters, 42).fit(X_train, y_train)
        model_dir = workdir / version / "model"
        path = recipe.save_model(model, model_dir, X_train)
        specs[version] = {
            "endpoint": "bench-rollout", "version": version, "model_dir": str(model_dir),
            "sha256": path.with_name(path.name + ".sha256").read_text().strip(),
            "input_schema": recipe.input_schema(X_train), "max_payload_mb": 6.0, "client_timeout_seconds": 5.0,
            "capture_percent": 100, "capture_max_mb": 100.0}
        predictions[version] = model.predict(rows1000)
    bodies = {}
    for payload, frame_rows in (("single", X_test.iloc[[0]]), ("rows1000", rows1000)):
        name, content_type = FORMATS["endpoint"][payload]
        path = workdir / f"{payload}-{name}.body"
        path.write_text(_body(frame_rows, name))
        bodies[payload] = (path, content_type)
    disagree = int((predictions["v-serving"] != predictions["v-candidate"]).sum())
    return {"specs": specs, "bodies": bodies, "rows1000_disagreeing": disagree}


def rollout_server(root: Path, workdir: Path, name: str, versions: dict[str, Any], workers: int,
                   tag: str = "") -> Server:
    """``name``'s endpoint, started as ``launch_server`` starts one (its command, metrics directory, pointer)."""
    base = workdir / f"{name}{tag}"
    base.mkdir(parents=True, exist_ok=True)
    serving, candidate = (dict(versions["specs"][v]) for v in ("v-serving", "v-candidate"))
    for spec in (serving, candidate):
        spec["capture_dir"] = str(base / "capture")  # one per endpoint: each version writes under its own name
    pointer = dict(serving)
    if SERVERS[name] is not None:
        mode, percent = SERVERS[name]
        pointer["split"] = {"mode": mode, "percent": percent, "candidate": candidate}
    pointer_path = base / "current.json"
    pointer_path.write_text(json.dumps(pointer, indent=2))
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--config", "python:pipeline.serving.gunicorn_conf",
               "--bind", f"{HOST}:{port}", "--workers", str(workers), "--name", f"bench-rollout-{name}{tag}",
               "pipeline.serving.app:create_app()"]  # the command launch_server runs
    env = project_env(root, {"MLOPS_MODEL_POINTER": str(pointer_path),
                             "PROMETHEUS_MULTIPROC_DIR": str(base / "metrics")})  # as launch_server sets it
    return Server(f"endpoint[{name}{tag}]", command, env, root, base / "server.log", port)


def _metric_sum(text: str, name: str, *label_parts: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(part in line for part in label_parts))


def check_what_was_measured(servers: dict[str, Server], sent: dict[str, int], disagreeing: int) -> dict[str, Any]:
    """Each server routed as its pointer says: read back from its /metrics (all workers summed)."""
    time.sleep(2.5)  # the workers write their counts within a second
    found: dict[str, Any] = {}
    for key, server in servers.items():
        name = key.split("[")[0]
        status, _, raw = http_request(server.port, "GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"{server.name}: /metrics answered {status}: metrics were meant to be on")
        text = raw.decode()
        serving = _metric_sum(text, "mlops_endpoint_requests_total", 'version="v-serving"', 'code="200"')
        candidate = _metric_sum(text, "mlops_endpoint_requests_total", 'version="v-candidate"', 'code="200"')
        shadowed = _metric_sum(text, "mlops_endpoint_shadow_requests_total", 'version="v-candidate"', 'code="200"')
        different = _metric_sum(text, "mlops_endpoint_shadow_rows_total", 'agreement="different"')
        answered = serving + candidate
        share = round(100 * candidate / answered, 2) if answered else None
        found[key] = {"requests_sent": sent[key], "answered_by_serving": serving, "answered_by_candidate": candidate,
                      "candidate_percent": share, "shadow_predictions": shadowed,
                      "shadow_rows_different": different}
        problem = None
        if answered < sent[key]:
            problem = f"counted {answered:.0f} answers of {sent[key]} requests sent"
        elif name == "one" and candidate:
            problem = "a candidate answered"
        elif name == "split" and not (share is not None and abs(share - SERVERS["split"][1]) < 0.5):
            problem = f"the candidate answered {share}% of the requests, not {SERVERS['split'][1]}%"
        elif name == "shadow" and (candidate or shadowed < 0.99 * serving or (disagreeing and not different)):
            problem = (f"the candidate answered {candidate:.0f} and predicted {shadowed:.0f} copies of {serving:.0f} "
                       f"requests ({different:.0f} rows different)")
        if problem:
            raise RuntimeError(f"{server.name}: {problem}")
    return found


def check_answers(server: Server, bodies: dict[str, tuple[Path, str]]) -> None:
    """A live answer, naming the serving version (the candidate's share starts at the 10th request)."""
    body, content_type = bodies["single"]
    status, headers, answer = http_request(server.port, "POST", "/invocations", body.read_bytes(),
                                           {"Content-Type": content_type, "Accept": "application/json"})
    lower = {key.lower(): value for key, value in headers.items()}
    if status != 200 or lower.get("x-model-version") != "v-serving":
        raise RuntimeError(f"{server.name}: answered {status} as {lower.get('x-model-version')!r}: {answer[:200]!r}")


# --------------------------------------------------------------------------- run and report
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load run (default 3)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds; the median of the rounds' ratios counts")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2, help="endpoint workers (the pipeline's default: 2)")
    parser.add_argument("--quiet-cores", type=float, default=0.3,
                        help="before each run, wait until other work uses at most this many cores...")
    parser.add_argument("--quiet-wait", type=float, default=3.0, help="...but at most this many seconds")
    parser.add_argument("--inprocess-rounds", type=int, default=150, help="in-process rounds (blocks per app)")
    parser.add_argument("--patch", help="benchmark a copy of the project with this patch applied")
    parser.add_argument("--compare-patch", help="also run the three servers from a copy of the project with this "
                        "patch (comma-separated patches), side by side; its ratios are against its own one-model "
                        "server")
    parser.add_argument("--quick", action="store_true", help="4 rounds of 2 s runs, 1 s warm-up")
    parser.add_argument("--output", default="rollout", help="results name (bench/results/<name>.json)")
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup, args.inprocess_rounds = 2.0, 4, 1.0, 50
    if not wrk_path():
        print(WRK_MISSING, file=sys.stderr)
    tags = [""] + ([" [patched]"] if args.compare_patch else [])
    keys = [f"{name}{tag}" for tag in tags for name in SERVERS]
    results: dict[str, Any] = {"benchmark": "rollout", "machine": machine_info(),
                               "load_generator": load_generator_name(), "duration_s": args.duration,
                               "rounds": args.rounds, "endpoint_workers": args.workers, "patch": args.patch,
                               "compare_patch": args.compare_patch,
                               "servers": {name: split for name, split in SERVERS.items()},
                               "runs": {key: {load: [] for load, _, _ in LOADS} for key in keys}}
    started = time.perf_counter()
    with temp_dir("bench-rollout-", keep=args.keep_temp) as workdir:
        roots = {"": project_root(args.patch, workdir)}
        if args.compare_patch:
            roots[" [patched]"] = project_root(args.compare_patch, workdir)
        versions = fit_versions(workdir)
        results["rows1000_disagreeing"] = versions["rows1000_disagreeing"]
        servers: dict[str, Server] = {}
        sent = dict.fromkeys(keys, 0)
        try:
            for tag in tags:
                for name in SERVERS:
                    key = f"{name}{tag}"
                    servers[key] = rollout_server(roots[tag], workdir, name, versions, args.workers,
                                                  "-patched" if tag else "").start()
            for key, server in servers.items():
                server.wait_ready(timeout=180)
                check_answers(server, versions["bodies"])
                sent[key] += 1
                for _, payload, connections in LOADS:
                    sent[key] += measure_warmup(server, versions["bodies"][payload], connections, args.warmup)
            for round_index in range(args.rounds):
                shift = round_index % len(keys)
                order = keys[shift:] + keys[:shift]
                for load, payload, connections in LOADS:
                    for key in order:
                        measured = measure(servers[key], versions["bodies"][payload], connections, args)
                        sent[key] += measured["requests"]
                        results["runs"][key][load].append(measured)
                        print(f"  round {round_index + 1} {key:18s} {load:12s} {measured['rps']:>9,.0f} req/s  "
                              f"{measured['req_per_cpu_s'] or 0:>7,.0f} req/CPU-s  p99 {measured['p99_ms']:.2f} ms  "
                              f"errors {measured['errors']}  (foreign load {measured['foreign_busy_cores']:.2f} "
                              f"cores)", flush=True)
            results["checked"] = check_what_was_measured(servers, sent, versions["rows1000_disagreeing"])
        finally:
            for server in servers.values():
                server.stop()
        results["inprocess"] = {}
        for tag in tags:
            print(f"  in process{tag} ...", flush=True)
            results["inprocess"][tag.strip(" []") or "current"] = inprocess(
                roots[tag], workdir, "-patched" if tag else "", versions["bodies"]["single"], args.inprocess_rounds)
    results.update(summarise(results, tags))
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_result(args.output, results)
    print_report(results, tags)
    return results


def inprocess(root: Path, workdir: Path, suffix: str, body: tuple[Path, str], rounds: int) -> dict[str, Any]:
    """``bench/rollout_inprocess.py`` over the pointers the servers read: CPU per request, app alone."""
    scratch = workdir / f"inprocess{suffix}"
    (scratch / "metrics").mkdir(parents=True, exist_ok=True)
    env = project_env(root, {"PYTHONPATH": f"{root}:{REPO}", "PROMETHEUS_MULTIPROC_DIR": str(scratch / "metrics")})
    pointers = [f"--pointer={name}={workdir / (name + suffix) / 'current.json'}" for name in SERVERS]
    run = run_child([sys.executable, str(BENCH / "rollout_inprocess.py"), *pointers, "--body", str(body[0]),
                     "--content-type", body[1], "--blocks", str(rounds)], env=env, cwd=root, timeout=900)
    if run["returncode"] != 0:
        raise RuntimeError(f"in-process measurement failed: {run['stderr'][-1500:]}")
    return python_child_json(run["stdout"])


def measure_warmup(server: Server, body: tuple[Path, str], connections: int, seconds: float) -> int:
    return int(run_load(server.port, "/invocations", *body, connections, seconds)["requests"])


def summarise(results: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for key, per_load in results["runs"].items():
        summary[key] = {}
        for load, runs in per_load.items():
            summary[key][load] = {"rps": median([run["rps"] for run in runs]),
                                  "req_per_cpu_s": median([run["req_per_cpu_s"] for run in runs]),
                                  "p99_ms": median([run["p99_ms"] for run in runs]),
                                  "foreign_busy_cores": median([run["foreign_busy_cores"] for run in runs]),
                                  "errors": sum(run["errors"] for run in runs)}
    checks = []
    for tag in tags:
        for label, (name, target) in TARGETS.items():
            for load, _, _ in LOADS:
                if name == "split" and load not in TARGET_LOADS:
                    continue  # 1,000 rows: the shadow's ratio alone, as information
                for basis in ("rps", "req_per_cpu_s"):
                    pairs = zip(results["runs"][f"{name}{tag}"][load], results["runs"][f"one{tag}"][load])
                    value = median([ratio(ours[basis], theirs[basis]) for ours, theirs in pairs])  # round by round
                    judged = basis == "rps" and load in TARGET_LOADS
                    checks.append({"metric": f"{label}{tag} {load} {'req/s' if basis == 'rps' else 'req/CPU-s'}",
                                   "value": value, "target": f">= {target}" if judged else None,
                                   "met": (value is not None and value >= target) if judged else None})
    for tag in tags:
        measured = results["inprocess"][tag.strip(" []") or "current"]
        one_c8 = summary[f"one{tag}"]["single_c8"]["req_per_cpu_s"]
        server_us = 1e6 / one_c8 if one_c8 else None
        for label, (name, target) in TARGETS.items():
            compared = measured[f"{name} vs one"]
            checks.append({"metric": f"{label}{tag}: added CPU per request, us (in process)",
                           "value": compared["added_cpu_us"], "target": None, "met": None})
            checks.append({"metric": f"{label}{tag}: app alone, in process (lower bound)", "value": compared["ratio"],
                           "target": f">= {target}", "met": compared["ratio"] >= target})
            if server_us is not None:
                value = round(server_us / (server_us + compared["added_cpu_us"]), 3)
                checks.append({"metric": f"{label}{tag}: server, projected (c8 CPU per request + added)",
                               "value": value, "target": f">= {target}", "met": value >= target})
    return {"summary": summary, "checks": checks}


def print_report(results: dict[str, Any], tags: list[str]) -> None:
    summary = results["summary"]
    print_table(f"Rollout ({results['load_generator']}, {results['endpoint_workers']} workers, medians of "
                f"{results['rounds']} rounds of {results['duration_s']:g} s)",
                ["server", "1-row c1 req/s", "c1 p99 ms", "1-row c8 req/s", "c8 p99 ms", "1000-row c1 req/s",
                 "req/CPU-s c1 / c8 / 1000", "foreign cores", "errors"],
                [[key, s["single_c1"]["rps"], s["single_c1"]["p99_ms"], s["single_c8"]["rps"],
                  s["single_c8"]["p99_ms"], s["rows1000_c1"]["rps"],
                  " / ".join(f"{s[load]['req_per_cpu_s'] or 0:,.0f}" for load, _, _ in LOADS),
                  median([s[load]["foreign_busy_cores"] for load, _, _ in LOADS]),
                  sum(s[load]["errors"] for load, _, _ in LOADS)] for key, s in summary.items()])
    print_table("Rollout in process: CPU per single-row request through the app (median of the rounds)",
                ["project", "app", "CPU us"],
                [[project, name, measured[name]["median_cpu_us"]] for project, measured in results["inprocess"].items()
                 for name in SERVERS])
    print_table("Rollout: ratios against targets (median of the rounds' ratios)", ["metric", "value", "target", "met"],
                [[c["metric"], c["value"], c["target"], c["met"]] for c in results["checks"]])


if __name__ == "__main__":
    main()
