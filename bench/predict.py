"""``predict``: a 1,000,000 x 20 CSV scored offline against a bare script, through the local endpoint, and a 2 GB file.

    python -m bench.predict                     # 1,000,000 rows: offline (3 rounds each, alternating) and endpoint
    python -m bench.predict --rows 200000       # a quick run
    python -m bench.predict --large-gb 2        # also a ~2 GB CSV scored offline: its peak memory (~2 min)

1. Offline: ``run_pipeline.py predict --training-job JOB`` (a logistic regression trained by the pipeline on 100,000
   rows of the same data) against ``bench/bare_predict.py`` (pandas.read_csv of the whole file + model.predict +
   to_csv), each a fresh process, in alternating order, each started after a quiet moment (at most 20 s of waiting).
   Wall seconds, CPU seconds (user + system, from the children's rusage) and peak RSS (wait4). Targets: the bare
   script's time / predict's >= 0.8; predict's peak / the bare script's <= 0.5. Both outputs must be the same bytes.
2. Through the endpoint: the job deployed to a local endpoint (2 workers), then ``predict --endpoint-name`` on the
   same file; rows/s of the scoring itself (``--json``'s seconds: after the imports and the store) and of the whole
   process. Target >= 200,000 rows/s. The server's CPU seconds and the machine's other load are recorded.
3. ``--large-gb N``: the CSV repeated to N GB, scored offline: peak RSS (target < 500 MB) and rows/s.

Peak RSS is each command's own, reported by a small wrapper process: Linux keeps a process's peak RSS across exec,
so a command forked straight from this process would count this process's memory as its own.

Every server is stopped at the end (``cleanup --endpoint-name``, then anything still naming the store is killed).
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
    REPO,
    children_cpu,
    machine_info,
    median,
    print_table,
    project_env,
    ratio,
    run_child,
    system_cpu,
    temp_dir,
    tree_cpu_seconds,
    wait_for_quiet,
    write_result,
)
from bench.scale import synthetic_csv

TIME_TARGET = 0.8  # bare seconds / predict seconds
MEMORY_TARGET = 0.5  # predict peak RSS / bare peak RSS
ENDPOINT_TARGET = 200_000  # rows/s through the local endpoint
LARGE_MEMORY_MB = 500
TRAINING_ROWS = 100_000
ENDPOINT = "bench-predict"


def cli(store: Path, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "run_pipeline.py"), "--store-dir", str(store), *args]


# Linux keeps a process's peak RSS across exec, so a child forked from this (large) process would report this
# process's RSS as its own peak. A small Python process runs the command instead and reports its child's peak.
PEAK_WRAPPER = ("import resource, subprocess, sys\n"
                "code = subprocess.call(sys.argv[1:])\n"
                "sys.stderr.write(f'\\nPEAK_RSS_KB {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n')\n"
                "sys.exit(code)\n")


def measured(command: list[str], workdir: Path, quiet: bool = True) -> dict[str, Any]:
    waited, busy = wait_for_quiet(1.0, 20.0) if quiet else (0.0, None)
    cpu_before, (busy0, _) = children_cpu(), system_cpu()
    run = run_child([sys.executable, "-c", PEAK_WRAPPER, *command], env=project_env(REPO), cwd=workdir,
                    timeout=3600)
    cpu = children_cpu() - cpu_before
    busy1, _ = system_cpu()
    if run["returncode"] != 0:
        raise RuntimeError(f"{command[1:4]} failed: {run['stderr'][-1500:]}")
    peak_kb = int(run["stderr"].rsplit("PEAK_RSS_KB ", 1)[1].split()[0])
    return {"seconds": round(run["seconds"], 3), "cpu_seconds": round(cpu, 3), "peak_rss_mb": round(peak_kb / 1024, 1),
            "waited_for_quiet_s": round(waited, 1), "busy_cores_before": busy,
            "other_cores_during": round(max(0.0, (busy1 - busy0 - cpu) / run["seconds"]), 2),
            "stdout": run["stdout"][-2000:]}


def train(csv: Path, store: Path, workdir: Path) -> str:
    sample = workdir / "sample.csv"
    with open(csv, "rb") as source, open(sample, "wb") as target:
        for _ in range(TRAINING_ROWS + 1):
            target.write(source.readline())
    results = workdir / "train.json"
    run_child(cli(store, "--mode", "training", "--dataset", str(sample), "--minimum-accuracy", "0.5",
                  "--accuracy-threshold", "0.5", "--set", "cv_folds=2", "--output-file", str(results),
                  "--log-file", str(workdir / "train.log")), env=project_env(REPO), cwd=workdir, timeout=1800)
    job = json.loads(results.read_text())["summary"]["training_job"]
    if not job:
        raise RuntimeError(f"training failed: {results.read_text()[:1500]}")
    return str(job)


def server_pids(store: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(store).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def offline(csv: Path, store: Path, job: str, workdir: Path, rounds: int) -> dict[str, Any]:
    model = store / "jobs" / job / "model" / "model.joblib"
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "predict": []}
    for index in range(rounds):
        for kind in (("bare", "predict") if index % 2 == 0 else ("predict", "bare")):
            out = workdir / f"{kind}.csv"
            command = [sys.executable, str(REPO / "bench" / "bare_predict.py"), str(model), str(csv), str(out)] \
                if kind == "bare" else cli(store, "predict", "--training-job", job, "--input", str(csv), "--output",
                                           str(out))
            runs[kind].append(measured(command, workdir))
            print(f"  {kind:8} {runs[kind][-1]['seconds']:6.2f} s, cpu {runs[kind][-1]['cpu_seconds']:6.2f} s, "
                  f"peak {runs[kind][-1]['peak_rss_mb']:.0f} MB, other load {runs[kind][-1]['other_cores_during']} "
                  f"cores", flush=True)
    same = (workdir / "bare.csv").read_bytes() == (workdir / "predict.csv").read_bytes()
    summary = {kind: {key: median([run[key] for run in kind_runs]) for key in ("seconds", "cpu_seconds",
                                                                              "peak_rss_mb", "other_cores_during")}
               for kind, kind_runs in runs.items()}
    return {**summary, "runs": runs, "same_output": same,
            "time_ratio": ratio(summary["bare"]["seconds"], summary["predict"]["seconds"]),
            "cpu_ratio": ratio(summary["bare"]["cpu_seconds"], summary["predict"]["cpu_seconds"]),
            "memory_ratio": ratio(summary["predict"]["peak_rss_mb"], summary["bare"]["peak_rss_mb"])}


def endpoint(csv: Path, store: Path, job: str, workdir: Path, rows: int, rounds: int,
             concurrency: list[int]) -> dict[str, Any]:
    deploy = workdir / "deploy.json"
    run_child(cli(store, "--mode", "deployment", "--training-job", job, "--endpoint-name", ENDPOINT,
                  "--minimum-accuracy", "0.5", "--accuracy-threshold", "0.5", "--replay-requests", "0",
                  "--set", "performance_requests=20", "--output-file", str(deploy),
                  "--log-file", str(workdir / "deploy.log")), env=project_env(REPO), cwd=workdir, timeout=900)
    if not json.loads(deploy.read_text())["summary"]["deployment_occurred"]:
        raise RuntimeError(f"deployment failed: {deploy.read_text()[:1500]}")
    results = []
    for _ in range(rounds):
        for clients in concurrency:
            pids = server_pids(store)
            server_before = sum(tree_cpu_seconds(pid) for pid in pids)
            run = measured(cli(store, "predict", "--endpoint-name", ENDPOINT, "--input", str(csv), "--output",
                               str(workdir / "endpoint.csv"), "--concurrency", str(clients), "--json"), workdir)
            server = sum(tree_cpu_seconds(pid) for pid in pids) - server_before
            run["other_cores_during"] = round(max(0.0, run["other_cores_during"] - server / run["seconds"]), 2)
            report = json.loads(run["stdout"][run["stdout"].index("{"):])
            results.append({"concurrency": clients, "scoring_seconds": report["seconds"],
                            "rows_per_s": round(rows / report["seconds"]), "process_rows_per_s":
                            round(rows / run["seconds"]), "server_cpu_seconds": round(server, 2),
                            **{key: run[key] for key in ("seconds", "cpu_seconds", "peak_rss_mb",
                                                         "other_cores_during")}})
            print(f"  endpoint, {clients} in flight: {results[-1]['rows_per_s']:,} rows/s scoring "
                  f"({results[-1]['process_rows_per_s']:,} for the whole process), client cpu "
                  f"{run['cpu_seconds']:.2f} s, server cpu {server:.2f} s, other load {run['other_cores_during']} "
                  f"cores", flush=True)
    same = (workdir / "endpoint.csv").read_bytes() == (workdir / "predict.csv").read_bytes() \
        if (workdir / "predict.csv").exists() else None
    best = {clients: median([r["rows_per_s"] for r in results if r["concurrency"] == clients])
            for clients in concurrency}
    return {"runs": results, "median_rows_per_s": best, "same_output_as_offline": same}


def large(csv: Path, store: Path, job: str, workdir: Path, gigabytes: float) -> dict[str, Any]:
    path = workdir / "large.csv"
    with open(csv, "rb") as source:
        header = source.readline()
        body = source.read()
    rows_each = body.count(b"\n")
    copies = max(1, int(gigabytes * 1e9 // len(body)) + 1)
    with open(path, "wb") as target:
        target.write(header)
        for _ in range(copies):
            target.write(body)
    del body  # this process's memory does not count in the child's peak (PEAK_WRAPPER)
    size = path.stat().st_size
    run = measured(cli(store, "predict", "--training-job", job, "--input", str(path), "--output",
                       str(workdir / "large.out"), "--json"), workdir)
    report = json.loads(run["stdout"][run["stdout"].index("{"):])
    path.unlink()
    (workdir / "large.out").unlink()
    return {"gigabytes": round(size / 1e9, 2), "rows": rows_each * copies, "rows_written": report["rows_written"],
            "rows_per_s": round(rows_each * copies / report["seconds"]),
            **{key: run[key] for key in ("seconds", "cpu_seconds", "peak_rss_mb", "other_cores_during")}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="offline runs of each kind (alternating)")
    parser.add_argument("--endpoint-rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="4", help="requests in flight, comma-separated (e.g. 2,4,8)")
    parser.add_argument("--large-gb", type=float, default=0.0, help="also score a CSV of this many GB offline")
    parser.add_argument("--skip-endpoint", action="store_true")
    parser.add_argument("--skip-offline", action="store_true", help="the endpoint (and --large-gb) only")
    parser.add_argument("--output", default="predict")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    csv = synthetic_csv(args.rows)
    machine = machine_info()
    with temp_dir("bench-predict-") as workdir:
        store = workdir / "store"
        try:
            job = train(csv, store, workdir)
            offline_result = None if args.skip_offline else offline(csv, store, job, workdir, args.rounds)
            endpoint_result = None if args.skip_endpoint else endpoint(
                csv, store, job, workdir, args.rows, args.endpoint_rounds,
                [int(value) for value in args.concurrency.split(",")])
            large_result = large(csv, store, job, workdir, args.large_gb) if args.large_gb else None
        finally:
            run_child(cli(store, "cleanup", "--endpoint-name", ENDPOINT), env=project_env(REPO), cwd=workdir,
                      timeout=120)
            for pid in server_pids(store):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    machine["loadavg_at_end"] = os.getloadavg()
    best_endpoint = max((endpoint_result or {}).get("median_rows_per_s", {0: None}).values(), default=None)
    results: dict[str, Any] = {
        "benchmark": "predict", "machine": machine, "rows": args.rows, "csv": str(csv),
        "csv_mb": round(csv.stat().st_size / 1e6, 1), "offline": offline_result, "endpoint": endpoint_result,
        "large": large_result, "elapsed_s": round(time.perf_counter() - started, 1),
        "checks": [] if offline_result is None else [
            {"metric": "offline time: bare seconds / predict seconds", "value": offline_result["time_ratio"],
             "target": f">= {TIME_TARGET}", "met": (offline_result["time_ratio"] or 0) >= TIME_TARGET},
            {"metric": "offline peak memory: predict / bare", "value": offline_result["memory_ratio"],
             "target": f"<= {MEMORY_TARGET}", "met": (offline_result["memory_ratio"] or 9) <= MEMORY_TARGET},
            {"metric": "offline output the same bytes as the bare script's", "value": offline_result["same_output"],
             "target": "yes", "met": offline_result["same_output"]},
        ],
    }
    if endpoint_result is not None:
        results["checks"].append({"metric": "through the local endpoint, rows/s", "value": best_endpoint,
                                  "target": f">= {ENDPOINT_TARGET:,}",
                                  "met": bool(best_endpoint and best_endpoint >= ENDPOINT_TARGET)})
    if large_result is not None:
        results["checks"].append({"metric": f"{large_result['gigabytes']} GB CSV offline, peak RSS MB",
                                  "value": large_result["peak_rss_mb"], "target": f"< {LARGE_MEMORY_MB}",
                                  "met": large_result["peak_rss_mb"] < LARGE_MEMORY_MB})
    write_result(args.output, results)
    if offline_result is not None:
        bare, ours = offline_result["bare"], offline_result["predict"]
        print_table(f"predict offline ({args.rows:,} rows x 20 features, {results['csv_mb']:.0f} MB CSV; medians)",
                    ["run", "seconds", "cpu seconds", "peak RSS MB", "other load (cores)"],
                    [["bare read_csv + predict + to_csv", bare["seconds"], bare["cpu_seconds"], bare["peak_rss_mb"],
                      bare["other_cores_during"]],
                     ["run_pipeline.py predict --training-job", ours["seconds"], ours["cpu_seconds"],
                      ours["peak_rss_mb"], ours["other_cores_during"]]])
    if endpoint_result is not None:
        print_table("predict through the local endpoint", ["in flight", "rows/s (scoring)", "rows/s (process)",
                                                            "client cpu s", "server cpu s", "other load (cores)"],
                    [[run["concurrency"], run["rows_per_s"], run["process_rows_per_s"], run["cpu_seconds"],
                      run["server_cpu_seconds"], run["other_cores_during"]] for run in endpoint_result["runs"]])
    if large_result is not None:
        print_table("predict offline, large file", ["GB", "rows", "seconds", "rows/s", "peak RSS MB"],
                    [[large_result["gigabytes"], large_result["rows"], large_result["seconds"],
                      large_result["rows_per_s"], large_result["peak_rss_mb"]]])
    print_table("predict: ratios against targets", ["metric", "value", "target", "met"],
                [[c["metric"], c["value"], c["target"], c["met"]] for c in results["checks"]])
    return results


if __name__ == "__main__":
    main()
