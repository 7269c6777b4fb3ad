"""Telemetry's cost: single-row throughput with metrics on and off, capture at 100% and at 0%.

    python -m bench.telemetry              # 10 rounds of 3 s runs per server and load (~4 min)
    python -m bench.telemetry --quick      # 4 rounds of 2 s

Three endpoints of the same fitted model (logistic regression on iris, the project's recipe)
run side by side, started as the pipeline starts them (gunicorn with the endpoint's worker,
2 workers):

- ``bare``: no ``PROMETHEUS_MULTIPROC_DIR`` (metrics off) and ``capture_percent`` 0;
- ``metrics``: metrics on, ``capture_percent`` 0;
- ``metrics+capture``: metrics on, ``capture_percent`` 100 (``capture_max_mb`` 100): the pipeline's default.

wrk sends single-row JSON bodies at 1 and 8 clients. In each round the three servers take
short turns one right after the other, in an order that rotates every round, each run after
waiting (briefly, bounded) for the machine to quieten. A ratio is taken within each round --
the servers of one round saw about the same foreign load on a shared machine -- and the
median over the rounds is reported: metrics on / off (target >= 0.95) and capture 100% / 0%
with metrics on (target >= 0.90), for requests per second and for requests per CPU-second of
the server's processes (what a request costs, whatever share of the cores other work left the
server). At the end each server's /metrics and capture directory are checked, so the run
measured what it says it did.

On a shared machine the load runs' rates move by tens of percent from one run to the next,
more than the few percent measured here. So the same three apps are also measured in one
process (``bench/telemetry_inprocess.py``): CPU per request, driven through ASGI, taking turns
in short blocks. That gives what telemetry adds to a request in microseconds, and two ratios
that hold whatever the foreign load: the app's own (a lower bound: the app alone costs less
than a request through the server) and the projected server ratio (the bare server's CPU per
request, measured above, plus what telemetry adds).
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
    wait_for_quiet,
    write_result,
    wrk_path,
)
from bench.serving import fit_models

SERVERS = {  # name: (metrics on, capture_percent)
    "bare": (False, 0),
    "metrics": (True, 0),
    "metrics+capture": (True, 100),
}
LOADS = (("single_c1", 1), ("single_c8", 8))
TARGETS = {"metrics on / off": ("metrics", "bare", 0.95), "capture 100% / 0%": ("metrics+capture", "metrics", 0.90)}


def telemetry_server(root: Path, workdir: Path, name: str, model: dict[str, Any], workers: int) -> Server:
    metrics_on, percent = SERVERS[name]
    base = workdir / name.replace("+", "-")
    base.mkdir(parents=True, exist_ok=True)
    spec = json.loads(Path(model["pointer"]).read_text())
    spec.update({"capture_percent": percent, "capture_max_mb": 100.0, "capture_dir": str(base / "capture")})
    pointer = base / "pointer.json"
    pointer.write_text(json.dumps(spec))
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--config", "python:pipeline.serving.gunicorn_conf",
               "--bind", f"{HOST}:{port}", "--workers", str(workers), "--name", f"bench-{name}",
               "pipeline.serving.app:create_app()"]  # the command pipeline/backends/local/servers.py runs
    env = project_env(root, {"MLOPS_MODEL_POINTER": str(pointer)})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # metrics off unless set here
    if metrics_on:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(base / "metrics")
    return Server(f"endpoint[{name}]", command, env, root, base / "server.log", port)


def measure(server: Server, body: tuple[Path, str], connections: int, args: argparse.Namespace) -> dict[str, Any]:
    waited, _ = wait_for_quiet(args.quiet_cores, args.quiet_wait)
    assert server.process is not None
    cpu_before = tree_cpu_seconds(server.process.pid)
    system_before, children_before = system_cpu()[0], children_cpu()
    began = time.perf_counter()
    measured = run_load(server.port, "/invocations", *body, connections, args.duration)
    wall = time.perf_counter() - began
    cpu = tree_cpu_seconds(server.process.pid) - cpu_before
    foreign = system_cpu()[0] - system_before - cpu - (children_cpu() - children_before)
    measured.update({"waited_for_quiet_s": round(waited, 1), "server_cpu_s": round(cpu, 2),
                     "req_per_cpu_s": round(measured["requests"] / cpu, 1) if cpu > 0 else None,
                     "foreign_busy_cores": round(max(0.0, foreign) / wall, 2)})
    return measured


def check_what_was_measured(servers: dict[str, Server], workdir: Path, sent: dict[str, int]) -> dict[str, Any]:
    """Metrics on where they should be and counting; captures written only where asked for."""
    found: dict[str, Any] = {}
    time.sleep(2.5)  # the workers write their counts within a second, their captures within two
    for name, server in servers.items():
        metrics_on, percent = SERVERS[name]
        status, _, text = http_request(server.port, "GET", "/metrics")
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
                      if line.startswith("mlops_endpoint_requests_total{") and 'code="200"' in line)
        capture = workdir / name.replace("+", "-") / "capture"
        lines = sum(path.read_bytes().count(b"\n") for path in capture.rglob("*.jsonl")) if capture.exists() else 0
        found[name] = {"metrics_status": status, "requests_counted": counted, "requests_sent": sent[name],
                       "capture_lines": lines}
        if metrics_on != (status == 200) or (metrics_on and counted < sent[name]):
            raise RuntimeError(f"{name}: /metrics answered {status} and counted {counted} of {sent[name]} requests")
        if (percent > 0) != (lines > 0):
            raise RuntimeError(f"{name}: capture_percent {percent} but {lines} captured lines")
    return found


def inprocess(root: Path, workdir: Path, model: dict[str, Any], body: tuple[Path, str],
              args: argparse.Namespace) -> dict[str, Any]:
    scratch = workdir / "inprocess"
    (scratch / "metrics").mkdir(parents=True, exist_ok=True)
    env = project_env(root, {"PYTHONPATH": f"{root}:{REPO}", "PROMETHEUS_MULTIPROC_DIR": str(scratch / "metrics")})
    run = run_child([sys.executable, str(BENCH / "telemetry_inprocess.py"), "--pointer", str(model["pointer"]),
                     "--body", str(body[0]), "--content-type", body[1], "--workdir", str(scratch),
                     "--blocks", str(args.inprocess_rounds)], env=env, cwd=root, timeout=900)
    if run["returncode"] != 0:
        raise RuntimeError(f"in-process measurement failed: {run['stderr'][-1500:]}")
    return python_child_json(run["stdout"])


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
    parser.add_argument("--quick", action="store_true", help="4 rounds of 2 s runs, 1 s warm-up")
    parser.add_argument("--output", default="telemetry", help="results name (bench/results/<name>.json)")
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup, args.inprocess_rounds = 2.0, 4, 1.0, 50
    if not wrk_path():
        print(WRK_MISSING, file=sys.stderr)
    results: dict[str, Any] = {"benchmark": "telemetry", "machine": machine_info(),
                               "load_generator": load_generator_name(), "duration_s": args.duration,
                               "rounds": args.rounds, "endpoint_workers": args.workers, "patch": args.patch,
                               "servers": {name: {"metrics": on, "capture_percent": percent}
                                           for name, (on, percent) in SERVERS.items()},
                               "runs": {name: {load: [] for load, _ in LOADS} for name in SERVERS}}
    started = time.perf_counter()
    with temp_dir("bench-telemetry-", keep=args.keep_temp) as workdir:
        root = project_root(args.patch, workdir)
        model = fit_models(workdir, ["logistic_regression"], with_mlflow=False)["logistic_regression"]
        body = model["bodies"]["single"]["endpoint"]
        servers: dict[str, Server] = {}
        sent = dict.fromkeys(SERVERS, 0)
        try:
            for name in SERVERS:
                servers[name] = telemetry_server(root, workdir, name, model, args.workers).start()
                servers[name].wait_ready(timeout=180)
            for name, server in servers.items():
                sent[name] += run_load(server.port, "/invocations", *body, 8, args.warmup)["requests"]
            names = list(SERVERS)
            for round_index in range(args.rounds):
                order = names[round_index % len(names):] + names[:round_index % len(names)]
                for load, connections in LOADS:
                    for name in order:
                        measured = measure(servers[name], body, connections, args)
                        sent[name] += measured["requests"]
                        results["runs"][name][load].append(measured)
                        print(f"  round {round_index + 1} {name:16s} {load:10s} {measured['rps']:>9,.0f} req/s  "
                              f"{measured['req_per_cpu_s'] or 0:>7,.0f} req/CPU-s  p99 {measured['p99_ms']:.2f} ms  "
                              f"errors {measured['errors']}  (foreign load {measured['foreign_busy_cores']:.2f} "
                              f"cores)", flush=True)
            results["checked"] = check_what_was_measured(servers, workdir, sent)
        finally:
            for server in servers.values():
                server.stop()
        print("  in process ...", flush=True)
        results["inprocess"] = inprocess(root, workdir, model, body, args)
    summary: dict[str, dict[str, Any]] = {}
    for name in SERVERS:
        summary[name] = {}
        for load, _ in LOADS:
            runs = results["runs"][name][load]
            summary[name][load] = {"rps": median([run["rps"] for run in runs]),
                                   "req_per_cpu_s": median([run["req_per_cpu_s"] for run in runs]),
                                   "p99_ms": median([run["p99_ms"] for run in runs]),
                                   "errors": sum(run["errors"] for run in runs)}
    results["summary"] = summary
    checks = []
    for label, (measured, baseline, target) in TARGETS.items():
        for load, _ in LOADS:
            for basis in ("rps", "req_per_cpu_s"):
                pairs = zip(results["runs"][measured][load], results["runs"][baseline][load])  # round by round
                value = median([ratio(ours[basis], theirs[basis]) for ours, theirs in pairs])
                primary = basis == "rps"
                checks.append({"metric": f"{label} {load} {'req/s' if primary else 'req/CPU-s'}", "value": value,
                               "target": f">= {target}" if primary else None,
                               "met": (value is not None and value >= target) if primary else None})
    cpu = {name: results["inprocess"][name]["median_cpu_us"] for name in SERVERS}
    bare_server_us = 1e6 / summary["bare"]["single_c8"]["req_per_cpu_s"]
    for label, (measured, baseline, target) in TARGETS.items():
        compared = results["inprocess"][f"{measured} vs {baseline}"]
        added = compared["added_cpu_us"]
        base_server_us = bare_server_us + (results["inprocess"]["metrics vs bare"]["added_cpu_us"]
                                           if baseline != "bare" else 0.0)
        checks.append({"metric": f"{label}: added CPU per request, us (in process)", "value": added,
                       "target": None, "met": None})
        value = compared["ratio"]
        checks.append({"metric": f"{label}: app alone, in process (lower bound)", "value": value,
                       "target": f">= {target}", "met": value >= target})
        value = round(base_server_us / (base_server_us + added), 3)
        checks.append({"metric": f"{label}: server, projected (c8 CPU per request + added)", "value": value,
                       "target": f">= {target}", "met": value >= target})
    results["checks"] = checks
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_result(args.output, results)
    print_table(f"Telemetry ({results['load_generator']}, medians of {args.rounds} rounds of {args.duration:g} s)",
                ["server", "1-row c1 req/s", "1-row c8 req/s", "c8 p99 ms", "1-row c1 req/CPU-s",
                 "1-row c8 req/CPU-s", "errors"],
                [[name, s["single_c1"]["rps"], s["single_c8"]["rps"], s["single_c8"]["p99_ms"],
                  s["single_c1"]["req_per_cpu_s"], s["single_c8"]["req_per_cpu_s"],
                  s["single_c1"]["errors"] + s["single_c8"]["errors"]] for name, s in summary.items()])
    print_table("Telemetry in process: CPU per single-row request through the app (median of the rounds)",
                ["app", "CPU us", "captured"],
                [[name, cpu[name], results["inprocess"][name]["captured"]] for name in SERVERS])
    print_table("Telemetry: ratios against targets (load runs: median of the rounds' ratios)",
                ["metric", "value", "target", "met"],
                [[c["metric"], c["value"], c["target"], c["met"]] for c in checks])
    return results


if __name__ == "__main__":
    main()
