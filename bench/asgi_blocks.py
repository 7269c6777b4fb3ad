"""Endpoint apps in one process, driven through ASGI in alternating blocks: the CPU a request costs each.

Shared by ``bench/telemetry_inprocess.py`` (metrics and capture on and off) and
``bench/rollout_inprocess.py`` (one model, a split, a shadow). The apps are built by ``create_app`` and
driven on the running event loop (uvloop in both) as the worker drives them, minus the HTTP parsing and
the socket. After every call the loop turns once (``asyncio.sleep(0)``, every app alike), so work the app
schedules after its answer (a shadow's prediction) runs, and is charged, right then, as in the worker.
Apps take turns in short blocks (a round: one block of each, in an order that rotates); each block ends
by writing what its telemetry holds. CPU is the process's (every thread). Apps are compared within a
round and the medians over the rounds are reported, which holds whatever the foreign load.
"""
from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Iterable
from typing import Any


def telemetries(app: Any) -> list[Any]:
    """The app's telemetry objects: the serving version's, and the candidate's during a bake."""
    found = [app.settings.telemetry]
    resource = app._router.find("/invocations")[0]  # falcon's router: (resource, method map, params, template)
    router = getattr(resource, "router", None)
    if router is not None:
        found.append(router.candidate.telemetry)
    return found


async def cpu_per_call(apps: dict[str, Any], body: bytes, content_type: str, calls: int, blocks: int,
                       profile: str | None = None) -> dict[str, list[float]]:
    """CPU seconds per call of each app, one figure per block; every answer must be a 200.

    ``profile`` names an app whose blocks run under cProfile (its 25 most expensive functions, by
    cumulative and by own time, go to stderr).
    """
    headers = [(b"host", b"endpoint"), (b"content-type", content_type.encode()), (b"accept", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def call(app: Any) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/invocations", "raw_path": b"/invocations",
                 "query_string": b"", "root_path": "", "headers": headers, "server": ("127.0.0.1", 8080),
                 "client": ("127.0.0.1", 50000), "mlops.started": time.perf_counter()}
        await app(scope, receive, send)
        await asyncio.sleep(0)  # the loop turns: a scheduled shadow prediction runs now

    def written(app: Any) -> None:  # what the block's telemetry holds goes out inside the block
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
    if statuses != {200}:
        raise RuntimeError(f"the apps answered {sorted(statuses)}, not only 200")
    if profiler is not None:
        for sort in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(25)
            sys.stderr.write(f"== cProfile of {profile}, by {sort}\n{out.getvalue()}")
    return per_call


def compared(per_call: dict[str, list[float]], pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Each app's median CPU per call, and for each (measured, baseline) pair what the measured one adds and
    the baseline's rate over it, taken round by round."""
    result: dict[str, Any] = {name: {"median_cpu_us": round(statistics.median(samples) * 1e6, 2)}
                              for name, samples in per_call.items()}
    for measured, baseline in pairs:
        rounds = list(zip(per_call[measured], per_call[baseline], strict=True))
        result[f"{measured} vs {baseline}"] = {
            "added_cpu_us": round(statistics.median(ours - theirs for ours, theirs in rounds) * 1e6, 2),
            "ratio": round(statistics.median(theirs / ours for ours, theirs in rounds), 3)}
    return result
