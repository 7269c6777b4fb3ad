"""The shared store (PostgreSQL) side by side with SQLite: a full run, and the listings over a big store.

    python -m bench.shared_store                          # 3 rounds; 10,000 runs and 100,000 events
    python -m bench.shared_store --rounds 5 --runs 10000 --events 100000

1. A full local run (train, gate, deploy to a local gunicorn endpoint, test it, keep it) in a fresh directory,
   its store either SQLite in that directory or a fresh PostgreSQL database, each schema created beforehand
   (``db upgrade``, untimed) so both runs find an existing, empty store; the endpoint is stopped afterwards. The
   two kinds alternate in order, round by round. Ratio: median(PostgreSQL) / median(SQLite), target <= 1.1.
2. A store holding ``--runs`` runs (each with its training job, half of them with a deployment) and ``--events``
   audit-trail events (a valid hash chain), on both dialects; ``history``, ``runs``, ``jobs`` (targets <= 0.5 s)
   and ``history --verify`` (target <= 5 s), each as a command typed at a shell: ``run_pipeline.py`` launched
   and waited for (interpreter start, imports, the store, the output), median of ``--repeat``, beside the same
   on an empty store. The command's own work (through the CLI in this process, the store opened afresh every
   time: engine, schema check, queries, output) is reported beside it, and so is the floor of any command: a
   process that only imports click, pydantic and SQLAlchemy, measured right after it (this machine's speed
   moves with its neighbours' load; the ratio to the floor does not move as much).

The PostgreSQL server is started in a temporary directory for the benchmark and stopped at its end
(``tests/postgres_fixtures.py``; the binaries of PostgreSQL 15, ``MLOPS_TEST_PG_BIN`` to point elsewhere).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    machine_info,
    median,
    print_table,
    project_env,
    ratio,
    run_child,
    temp_dir,
    write_result,
)
from bench.pipeline_overhead import stop_endpoints

RUN_TARGET = 1.1
LIST_TARGET = 0.5
VERIFY_TARGET = 5.0


# --------------------------------------------------------------------------- 1. a full run
def full_run(workdir: Path, url: str | None) -> float:
    """Seconds of one full local run, launch to exit, in a fresh directory whose store already exists."""
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    run_dir.mkdir()
    store = run_dir / ".mlops"
    where = ["--store-url", url] if url else []
    env = project_env(REPO)
    prepared = run_child([sys.executable, str(REPO / "run_pipeline.py"), "--store-dir", str(store), *where, "db",
                          "upgrade"], env=env, cwd=run_dir, timeout=300)
    if prepared["returncode"] != 0:
        raise RuntimeError(f"db upgrade failed: {prepared['stderr'][-800:]}")
    try:
        run = run_child([sys.executable, str(REPO / "run_pipeline.py"), "--store-dir", str(store), *where,
                         "--output-file", str(run_dir / "results.json"), "--log-file", str(run_dir / "run.log")],
                        env=env, cwd=run_dir, timeout=900)
    finally:
        stop_endpoints(store)
    if run["returncode"] != 0:
        raise RuntimeError(f"run exited {run['returncode']}: {run['stdout'][-800:]} {run['stderr'][-800:]}")
    return run["seconds"]


# --------------------------------------------------------------------------- 2. a big store
def populate(store_dir: Path, url: str | None, runs: int, events: int) -> None:
    """``runs`` runs, each with a training job, half with a deployment of one of ten endpoints, and ``events``
    events in one valid hash chain, written in one transaction (as many pipelines would have, over a year)."""
    from sqlalchemy import text

    from pipeline.state.audit_trail import GENESIS_HASH, event_hash
    from pipeline.state.store import DeploymentStore

    store = DeploymentStore(store_dir, url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    run_rows, job_rows, deployment_rows, version_rows, event_rows = [], [], [], [], []
    prev_hash = GENESIS_HASH
    per_run = max(1, events // runs)
    serving: dict[str, str] = {}

    def event(at: datetime, run_id: str, kind: str, endpoint: str | None, **detail: Any) -> None:
        nonlocal prev_hash
        stamp = at.isoformat(timespec="microseconds")
        body = json.dumps(detail, sort_keys=True, default=str)
        digest = event_hash(prev_hash, stamp, run_id, kind, endpoint, body)
        event_rows.append({"at": stamp, "run_id": run_id, "kind": kind, "endpoint_name": endpoint, "detail": body,
                           "prev_hash": prev_hash, "hash": digest})
        prev_hash = digest

    for number in range(runs):
        at = start + timedelta(minutes=number)
        run_id, job, endpoint = f"bench-{number:08d}", f"bench-job-{number:08d}", f"bench-model-{number % 10}"
        stamp = at.isoformat(timespec="microseconds")
        run_rows.append({"run_id": run_id, "started_at": stamp, "finished_at": (at + timedelta(seconds=9)).isoformat(
            timespec="microseconds"), "mode": "full", "backend": "local", "status": "success", "exit_code": 0,
            "results_file": f"/tmp/results-{number}.json", "host": "bench"})
        job_rows.append({"name": job, "run_id": run_id, "created_at": stamp, "backend": "local",
                         "model_type": "logistic_regression", "directory": f"/nowhere/{job}", "model_sha256": "0" * 64,
                         "metrics_json": json.dumps({"accuracy": 0.97, "cv_mean_accuracy": 0.96}),
                         "data_sha256": "1" * 64, "gate_decision": "deploy", "artifacts_json": "{}",
                         "gate_metric": "accuracy", "gate_value": 0.97, "dataset": "iris"})
        kinds = ["run_started", "training_completed", "gate_decision"]
        if number % 2 == 0:
            version = f"{endpoint}-{number:08d}"
            version_rows.append({"version": version, "endpoint_name": endpoint, "training_job": job,
                                 "model_sha256": "0" * 64, "created_at": stamp})
            deployment_rows.append({"run_id": run_id, "endpoint_name": endpoint, "from_version": serving.get(endpoint),
                                    "to_version": version, "training_job": job, "status": "deployed",
                                    "started_at": stamp, "finished_at": stamp})
            serving[endpoint] = version
            kinds += ["deployment_started", "endpoint_started", "deployment_deployed"]
        kinds += ["notification_sent"] * max(0, per_run - len(kinds) - 1) + ["run_finished"]
        for offset, kind in enumerate(kinds):
            event(at + timedelta(seconds=offset), run_id, kind, endpoint if "deploy" in kind else None,
                  training_job=job, accuracy=0.97, detail="x" * 80)
    while len(event_rows) < events:  # the rest: operators' requests and such, in the same chain
        event(start + timedelta(minutes=runs, seconds=len(event_rows)), "bench-extra", "rollout_requested",
              "bench-model-0", action="abort", by="bench")
    columns = {"runs": run_rows, "training_jobs": job_rows, "versions": version_rows, "deployments": deployment_rows,
               "events": event_rows}
    with store.engine.begin() as connection:
        for table, rows in columns.items():
            names = list(rows[0])
            sql = text(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})")
            for begin in range(0, len(rows), 5000):
                connection.execute(sql, rows[begin:begin + 5000])
    for endpoint, version in serving.items():
        with store.transaction() as connection:
            store.set_endpoint(connection, endpoint, backend="local", serving_version=version,
                               url="http://127.0.0.1:1")


def in_process(argv: list[str], repeat: int) -> tuple[float, int]:
    """Median seconds of a command through the CLI in this process, its store opened afresh each time."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from pipeline.state import database

    times, code = [], 0
    for _ in range(repeat):
        for engine in database._ENGINES.values():  # no connection or schema check carried over
            engine.dispose()
        database._ENGINES.clear()
        began = time.perf_counter()
        result = CliRunner().invoke(cli, argv)
        times.append(time.perf_counter() - began)
        code = result.exit_code
    return median(times) or 0.0, code


FLOOR = ["-c", "import click, pydantic, sqlalchemy"]  # what every command imports: the CLI, the config, the store


def as_process(argv: list[str], cwd: Path, repeat: int, script: list[str] | None = None) -> float:
    """Median seconds of ``run_pipeline.py`` with ``argv``, launched and waited for: what a command typed at a
    shell costs. Python's bytecode cache is on, as it is by default (this machine's environment turns it off
    with PYTHONDONTWRITEBYTECODE); an untimed first run writes it."""
    env = {key: value for key, value in project_env(REPO).items() if key != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, *(script or [str(REPO / "run_pipeline.py")]), *argv]
    run_child(command, env=env, cwd=cwd, timeout=300)
    times = []
    for _ in range(repeat):
        run = run_child(command, env=env, cwd=cwd, timeout=300)
        if run["returncode"] != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {run['stderr'][-800:]}")
        times.append(run["seconds"])
    return median(times) or 0.0


COMMANDS = {"history": ["history"], "runs": ["runs"], "jobs": ["jobs"], "history --verify": ["history", "--verify"]}


def listings(workdir: Path, url: str | None, label: str, runs: int, events: int, repeat: int) -> list[dict[str, Any]]:
    store_dir = workdir / f"big-{label}"
    began = time.perf_counter()
    populate(store_dir, url, runs, events)
    print(f"  {label}: {runs:,} runs and {events:,} events written in {time.perf_counter() - began:.0f} s",
          flush=True)
    where = ["--store-dir", str(store_dir)] + (["--store-url", url] if url else [])
    empty = workdir / f"empty-{label}"
    rows = []
    for name, command in COMMANDS.items():
        seconds, code = in_process([*where, *command], repeat)
        target = VERIFY_TARGET if "verify" in name else LIST_TARGET
        process = as_process([*where, *command], workdir, repeat)
        floor = as_process([], workdir, repeat, script=FLOOR)  # measured beside each command: the load moves
        rows.append({"store": label, "command": name, "process_seconds": round(process, 3), "target": target,
                     "met": process <= target, "seconds": round(seconds, 3), "exit_code": code,
                     "floor_seconds": round(floor, 3), "over_floor": round(process / floor, 2),
                     "process_seconds_empty_store": round(as_process(
                         ["--store-dir", str(empty), *command], workdir, repeat), 3) if url is None else None})
    return rows


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    from tests.postgres_fixtures import new_database, postgres_available, running_postgres

    parser = argparse.ArgumentParser(description="The shared PostgreSQL store side by side with SQLite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-runs", action="store_true", help="only the listings")
    args = parser.parse_args(argv)
    if not postgres_available():
        raise SystemExit("PostgreSQL binaries not found (set MLOPS_TEST_PG_BIN): nothing measured")
    sqlite_runs: list[float] = []
    postgres_runs: list[float] = []
    with temp_dir("bench-shared-store-") as workdir, running_postgres() as server:
        if not args.skip_runs:
            full_run(workdir, None)  # warm the page cache for both
            full_run(workdir, new_database(server))
            for index in range(args.rounds):
                order = ("sqlite", "postgresql") if index % 2 == 0 else ("postgresql", "sqlite")
                for kind in order:
                    if kind == "sqlite":
                        sqlite_runs.append(full_run(workdir, None))
                    else:
                        postgres_runs.append(full_run(workdir, new_database(server)))
                print(f"  round {index + 1}: SQLite {sqlite_runs[-1]:.2f} s, PostgreSQL {postgres_runs[-1]:.2f} s",
                      flush=True)
        listed = listings(workdir, None, "sqlite", args.runs, args.events, args.repeat)
        listed += listings(workdir, new_database(server), "postgresql", args.runs, args.events, args.repeat)
    run_ratio = ratio(median(postgres_runs), median(sqlite_runs))
    results = {"benchmark": "shared_store", "machine": machine_info(), "rounds": args.rounds,
               "full_run": {"sqlite_seconds": sqlite_runs, "postgresql_seconds": postgres_runs,
                            "sqlite_median": median(sqlite_runs), "postgresql_median": median(postgres_runs),
                            "ratio": run_ratio, "target": RUN_TARGET,
                            "met": run_ratio is not None and run_ratio <= RUN_TARGET},
               "store_size": {"runs": args.runs, "events": args.events}, "listings": listed}
    if sqlite_runs:
        print_table("A full local run: PostgreSQL store against SQLite (launch to exit)",
                    ["store", "median s", "runs (s)"],
                    [["SQLite", median(sqlite_runs), ", ".join(f"{s:.2f}" for s in sqlite_runs)],
                     ["PostgreSQL", median(postgres_runs), ", ".join(f"{s:.2f}" for s in postgres_runs)],
                     ["ratio (target <= 1.1)", run_ratio, "met" if results["full_run"]["met"] else "NOT MET"]])
    print_table(f"Listings over {args.runs:,} runs and {args.events:,} events (median of {args.repeat})",
                ["store", "command", "as a process s", "target s", "met", "command's work s", "process, empty store s",
                 "floor s", "x floor"],
                [[row["store"], row["command"], row["process_seconds"], row["target"], row["met"], row["seconds"],
                  row["process_seconds_empty_store"], row["floor_seconds"], row["over_floor"]] for row in listed])
    write_result("shared_store", results)
    return results


if __name__ == "__main__":
    main()
