"""CPU a single-row request costs inside the endpoint's app, with and without telemetry.

Run as a child of ``bench.telemetry`` with the benchmarked project first on PYTHONPATH and
``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client picks its multiprocess mode when first
imported)::

    PYTHONPATH=<project>:<repo> PROMETHEUS_MULTIPROC_DIR=DIR python bench/telemetry_inprocess.py \\
        --pointer POINTER --body FILE --workdir DIR

The three apps (``bench.telemetry.SERVERS``) are built by ``create_app`` in this one process and
driven through ASGI on a uvloop event loop, exactly as the worker drives them, minus the HTTP
parsing and the socket. They take turns in short blocks (a round: one block of each, in an
order that rotates), many rounds over; each block ends by writing what its telemetry holds
(metrics to their files, captured records to disk), so the CPU of the capture writer's work
lands in its own block. CPU is the process's (``time.process_time``: every thread). Other work
on a shared machine inflates it less than wall time, but still (a busy sibling hyperthread,
evicted caches), and it changes within seconds: so apps are compared within a round, a few
tens of milliseconds apart, and the medians over the rounds of those comparisons are what
counts. The difference between two apps is what telemetry adds to a request; against the
app's own cost it gives a lower bound of the throughput ratio (the real server spends more
per request, in HTTP and system calls, than the app alone).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import emit_json

SERVERS = {"bare": (False, 0), "metrics": (True, 0), "metrics+capture": (True, 100)}  # as bench.telemetry
PAIRS = (("metrics", "bare"), ("metrics+capture", "metrics"))


def build_apps(pointer: Path, workdir: Path) -> dict[str, Any]:
    from pipeline.serving import create_app

    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    apps = {}
    for name, (metrics_on, percent) in SERVERS.items():
        spec = json.loads(pointer.read_text())
        spec.update({"capture_percent": percent, "capture_max_mb": 100.0,
                     "capture_dir": str(workdir / name.replace("+", "-") / "capture")})
        app_pointer = workdir / f"{name.replace('+', '-')}-pointer.json"
        app_pointer.write_text(json.dumps(spec))
        if not metrics_on:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]  # read when the app's telemetry is built
        try:
            apps[name] = create_app(str(app_pointer))
        finally:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return apps


async def run(apps: dict[str, Any], body: bytes, content_type: str, calls: int, blocks: int) -> dict[str, Any]:
    headers = [(b"host", b"endpoint"), (b"content-type", content_type.encode()), (b"accept", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def call(app: Any) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/invocations", "raw_path": b"/invocations",
                 "query_string": b"", "root_path": "", "headers": headers, "server": ("127.0.0.1", 8080),
                 "client": ("127.0.0.1", 50000), "mlops.started": time.perf_counter()}
        await app(scope, receive, send)

    def written(app: Any) -> None:  # what the block's telemetry holds goes out inside the block
        telemetry = app.settings.telemetry
        if telemetry.metrics is not None:
            telemetry.metrics.flush()
        if telemetry.capture is not None:
            telemetry.capture.flush()

    names = list(apps)
    for name in names:  # warm-up
        for _ in range(200):
            await call(apps[name])
        written(apps[name])
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for block in range(blocks):
        order = names[block % len(names):] + names[:block % len(names)]
        for name in order:
            app = apps[name]
            began = time.process_time()
            for _ in range(calls):
                await call(app)
            written(app)
            per_call[name].append((time.process_time() - began) / calls)
    if set(statuses) != {200}:
        raise RuntimeError(f"the apps answered {sorted(set(statuses))}, not only 200")
    result: dict[str, Any] = {"calls_per_block": calls, "rounds": blocks}
    for name in names:
        capture = apps[name].settings.telemetry.capture
        result[name] = {"median_cpu_us": round(statistics.median(per_call[name]) * 1e6, 2),
                        "captured": capture.written if capture is not None else 0}
    for measured, baseline in PAIRS:  # round by round
        rounds = list(zip(per_call[measured], per_call[baseline]))
        result[f"{measured} vs {baseline}"] = {
            "added_cpu_us": round(statistics.median(ours - theirs for ours, theirs in rounds) * 1e6, 2),
            "ratio": round(statistics.median(theirs / ours for ours, theirs in rounds), 3)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pointer", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--calls", type=int, default=300, help="requests per block")
    parser.add_argument("--blocks", type=int, default=150, help="rounds (one block of each app per round)")
    args = parser.parse_args()
    import uvloop

    apps = build_apps(Path(args.pointer), Path(args.workdir))
    body = Path(args.body).read_bytes()
    emit_json(uvloop.run(run(apps, body, args.content_type, args.calls, args.blocks)))


if __name__ == "__main__":
    main()
