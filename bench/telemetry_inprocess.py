"""CPU a single-row request costs inside the endpoint's app, with and without telemetry.

Run as a child of ``bench.telemetry`` with the benchmarked project first on PYTHONPATH and
``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client picks its multiprocess mode when first
imported)::

    PYTHONPATH=<project>:<repo> PROMETHEUS_MULTIPROC_DIR=DIR python bench/telemetry_inprocess.py \\
        --pointer POINTER --body FILE --workdir DIR

The three apps (``bench.telemetry.SERVERS``) are built by ``create_app`` in this one process and
driven through ASGI (``bench/asgi_blocks.py``) on a uvloop event loop, as the worker drives them, minus the HTTP
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
from pathlib import Path
from typing import Any

from bench.asgi_blocks import compared, cpu_per_call
from bench.common import emit_json

SERVERS = {"bare": (False, 0), "metrics": (True, 0), "metrics+capture": (True, 100)}  # as bench.telemetry
PAIRS = (("metrics", "bare"), ("metrics+capture", "metrics"))


def build_apps(pointer: Path, workdir: Path) -> dict[str, Any]:
    from pipeline.serving.app import create_app

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
    result = {"calls_per_block": calls, "rounds": blocks,
              **compared(await cpu_per_call(apps, body, content_type, calls, blocks), PAIRS)}
    for name, app in apps.items():
        capture = app.settings.telemetry.capture
        result[name]["captured"] = capture.written if capture is not None else 0
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
