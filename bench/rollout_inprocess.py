"""CPU a single-row request costs inside the endpoint's app holding one model, a 90/10 split, a shadow.

Run as a child of ``bench.rollout`` with the benchmarked project first on PYTHONPATH and
``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client picks its multiprocess mode when first
imported)::

    PYTHONPATH=<project>:<repo> PROMETHEUS_MULTIPROC_DIR=DIR python bench/rollout_inprocess.py \\
        --pointer one=P1 --pointer split=P2 --pointer shadow=P3 --body FILE

As ``bench/telemetry_inprocess.py`` does for telemetry: the apps are built by ``create_app`` in this
one process from the pointers the servers of ``bench.rollout`` read, and driven through ASGI on a
uvloop event loop as the worker drives them, minus the HTTP parsing and the socket. After every
call the loop turns once (``asyncio.sleep(0)``, every app alike), so a shadow's prediction, which
falcon schedules as a task after the answer, runs -- and is charged -- right then, as in the
worker. Apps take turns in short blocks (a round: one block of each, in an order that rotates);
each block ends by writing what its telemetry holds (both versions' metrics and captures). CPU
is the process's (every thread). Apps are compared within a round and the medians over the
rounds are reported: what a split or a shadow adds to a request, in microseconds, whatever
the foreign load on a shared machine. One thing the apps alone leave out: the worker sends the
version headers of a one-model endpoint itself (pre-encoded bytes), while during a split the app
sets them per response; the split's added cost here is therefore a slight overestimate.

``--profile NAME`` runs cProfile over NAME's blocks and prints its 25 most expensive functions
(cumulative and own time) on stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import emit_json


def build_apps(pointers: dict[str, Path]) -> dict[str, Any]:
    from pipeline.serving import create_app

    return {name: create_app(str(path)) for name, path in pointers.items()}


def telemetries(app: Any) -> list[Any]:
    """The app's telemetry objects: the serving version's, and the candidate's during a bake."""
    found = [app.settings.telemetry]
    resource = app._router.find("/invocations")[0]  # falcon's router: (resource, method map, params, template)
    router = getattr(resource, "router", None)
    if router is not None:
        found.append(router.candidate.telemetry)
    return found


async def run(apps: dict[str, Any], body: bytes, content_type: str, calls: int, blocks: int,
              profile: str | None) -> dict[str, Any]:
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
        await asyncio.sleep(0)  # the loop turns: a scheduled shadow prediction runs now

    def written(app: Any) -> None:
        for telemetry in telemetries(app):
            if telemetry.metrics is not None:
                telemetry.metrics.flush()
            if telemetry.capture is not None:
                telemetry.capture.flush()

    names = list(apps)
    for name in names:  # warm-up
        for _ in range(200):
            await call(apps[name])
        written(apps[name])
    profiler = cProfile.Profile() if profile else None
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for block in range(blocks):
        order = names[block % len(names):] + names[:block % len(names)]
        for name in order:
            app = apps[name]
            profiling = profiler is not None and name == profile
            began = time.process_time()
            if profiling:
                profiler.enable()
            for _ in range(calls):
                await call(app)
            written(app)
            if profiling:
                profiler.disable()
            per_call[name].append((time.process_time() - began) / calls)
    if set(statuses) != {200}:
        raise RuntimeError(f"the apps answered {sorted(set(statuses))}, not only 200")
    result: dict[str, Any] = {"calls_per_block": calls, "rounds": blocks}
    for name in names:
        result[name] = {"median_cpu_us": round(statistics.median(per_call[name]) * 1e6, 2)}
    for name in names[1:]:  # against the first (one model), round by round
        rounds = list(zip(per_call[name], per_call[names[0]]))
        result[f"{name} vs {names[0]}"] = {
            "added_cpu_us": round(statistics.median(ours - theirs for ours, theirs in rounds) * 1e6, 2),
            "ratio": round(statistics.median(theirs / ours for ours, theirs in rounds), 3)}
    if profiler is not None:
        import sys

        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(25)
            sys.stderr.write(f"== cProfile of {profile}, by {order}\n{out.getvalue()}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pointer", action="append", required=True, help="NAME=PATH; the first is the baseline")
    parser.add_argument("--body", required=True)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--calls", type=int, default=300, help="requests per block")
    parser.add_argument("--blocks", type=int, default=150, help="rounds (one block of each app per round)")
    parser.add_argument("--profile", help="cProfile this app's blocks (printed on stderr)")
    args = parser.parse_args()
    import uvloop

    pointers = {name: Path(path) for name, path in (one.split("=", 1) for one in args.pointer)}
    apps = build_apps(pointers)
    body = Path(args.body).read_bytes()
    emit_json(uvloop.run(run(apps, body, args.content_type, args.calls, args.blocks, args.profile)))


if __name__ == "__main__":
    main()
