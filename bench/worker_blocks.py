"""CPU per request of the endpoint's worker against the stack's hello world, in one process, HTTP parsing included.

    PYTHONPATH=<project>:<repo> PROMETHEUS_MULTIPROC_DIR=DIR python bench/worker_blocks.py \\
        --pointer one=P1 [--pointer split=P2 ...] --body FILE [--profile NAME] [--pyspy]

``bench/asgi_blocks.py`` drives the apps through ASGI; this drives the workers' *protocols*: the same
request bytes wrk sends (``bench/post.lua``: ``POST /invocations`` with Host, Content-Length,
Content-Type and Accept) are fed to the protocol's ``data_received`` on a uvloop event loop, as uvloop
feeds a socket's bytes, and the loop turns until the answer is complete. What is left out is what both
pay alike: the socket's system calls and uvloop's own I/O. Contenders:

- ``hello``: uvicorn's own ``HttpToolsProtocol`` with ``bench.hello_world.app`` (the stack's ceiling,
  configured as ``bench.hello_world.HelloWorker`` is);
- one per ``--pointer NAME=PATH``: ``pipeline.serving.worker.EndpointProtocol`` with
  ``create_app(PATH)``, configured as ``EndpointWorker._serve`` configures it (its version headers,
  client timeout, telemetry).

Each block is ``--calls`` requests on one kept-alive connection; a round is one block of every
contender in an order that rotates; each block ends by writing what its telemetry holds (metrics to
their files, captured records to disk), so that work is charged to it. CPU is the process's
(``time.process_time``, every thread). Reported: each contender's median CPU per request, and the
median over rounds of hello's CPU / the contender's (the in-process ratio; the server's is closer to 1,
since both also pay the system calls).
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import os
import pstats
import statistics
import sys
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

from bench.common import emit_json


class FakeTransport(asyncio.Transport):
    """The socket as a protocol sees it: writes are kept (and counted), nothing is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[bytes] = []
        self.closing = False
        self._protocol: Any = None

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.data.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return 0


def request_bytes(body: bytes, content_type: str, path: str = "/invocations") -> bytes:
    """What wrk sends with bench/post.lua (its header order)."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: {content_type}\r\nAccept: application/json\r\n\r\n").encode() + body


class Contender:
    """A protocol on one kept-alive fake connection, and what its app's telemetry holds."""

    def __init__(self, name: str, protocol_class: type, app: Any, config_extra: dict[str, Any],
                 headers: list[tuple[str, str]], telemetries: list[Any]) -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(app=app, loop="uvloop", http=protocol_class, lifespan="off", proxy_headers=False,
                        server_header=False, access_log=False, log_config=None, headers=headers)
        config.load()
        for key, value in config_extra.items():
            setattr(config, key, value)
        self.name = name
        self.state = ServerState()
        self.state.default_headers = [(b"date", formatdate(time.time(), usegmt=True).encode()),
                                      *config.encoded_headers]
        self.telemetries = telemetries
        self.config, self.protocol_class = config, protocol_class
        self.statuses: set[bytes] = set()
        self.connect()

    def connect(self) -> None:
        """A fresh connection (a connection left idle past its deadline is closed by the worker, which would then
        skip its timers: every contender connects again right before it is measured)."""
        self.transport = FakeTransport()
        self.protocol = self.protocol_class(config=self.config, server_state=self.state, app_state={})
        self.protocol.connection_made(self.transport)

    async def call(self, request: bytes) -> None:
        state, before = self.state, self.state.total_requests
        self.protocol.data_received(request)
        while state.total_requests == before:
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the loop turns once more: work scheduled after the answer runs now
        data = self.transport.data
        self.statuses.add(data[0][9:12])
        data.clear()
        if self.transport.closing:
            raise RuntimeError(f"{self.name}: the connection was closed, the measurement would be wrong")

    def written(self) -> None:
        for telemetry in self.telemetries:
            if telemetry.metrics is not None:
                telemetry.metrics.flush()
            if telemetry.capture is not None:
                telemetry.capture.flush()


def hello_contender() -> Contender:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from bench.hello_world import app

    return Contender("hello", HttpToolsProtocol, app, {}, [], [])


def endpoint_contender(name: str, pointer: str) -> Contender:
    from bench.asgi_blocks import telemetries
    from pipeline.serving.app import create_app
    from pipeline.serving.worker import EndpointProtocol

    app = create_app(pointer)
    settings = app.settings
    # As EndpointWorker._serve configures the worker: every setting the app carries for it (those of the version
    # of the project measured), the keep-alive timeout from the client timeout.
    extra = {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)
             if field.name != "headers"}
    extra["timeout_keep_alive"] = settings.client_timeout_seconds
    return Contender(name, EndpointProtocol, app, extra, list(settings.headers), telemetries(app))


async def cpu_per_call(contenders: list[Contender], request: bytes, calls: int, blocks: int,
                       profile: str | None) -> dict[str, list[float]]:
    for contender in contenders:  # warm-up
        contender.connect()
        for _ in range(300):
            await contender.call(request)
        contender.written()
    profiler = cProfile.Profile() if profile else None
    per_call: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    for block in range(blocks):
        shift = block % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            profiling = profiler is not None and contender.name == profile
            began = time.process_time()
            if profiling:
                profiler.enable()
            for _ in range(calls):
                await contender.call(request)
            contender.written()
            if profiling:
                profiler.disable()
            per_call[contender.name].append((time.process_time() - began) / calls)
    for contender in contenders:
        if contender.statuses != {b"200"}:
            raise RuntimeError(f"{contender.name} answered {sorted(contender.statuses)}, not only 200")
    if profiler is not None:
        for sort in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(45)
            sys.stderr.write(f"== cProfile of {profile}, by {sort}\n{out.getvalue()}")
    return per_call


def summary(per_call: dict[str, list[float]], reference: str = "hello") -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, samples in per_call.items():
        result[name] = {"median_cpu_us": round(statistics.median(samples) * 1e6, 2)}
        if name != reference:
            rounds = list(zip(per_call[reference], samples, strict=True))
            result[name]["added_over_hello_us"] = round(statistics.median(b - a for a, b in rounds) * 1e6, 2)
            result[name]["hello_ratio"] = round(statistics.median(a / b for a, b in rounds), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pointer", action="append", default=[], help="NAME=PATH of an endpoint version pointer")
    parser.add_argument("--body", required=True)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--calls", type=int, default=200, help="requests per block")
    parser.add_argument("--blocks", type=int, default=60, help="rounds (one block of each contender per round)")
    parser.add_argument("--profile", help="cProfile this contender's blocks (printed on stderr)")
    parser.add_argument("--seconds", type=float, help="instead of blocks: run NAME (--profile) alone this long, "
                        "e.g. under py-spy")
    args = parser.parse_args()
    import uvloop

    request = request_bytes(Path(args.body).read_bytes(), args.content_type)

    async def run() -> dict[str, Any]:
        # Built on the running loop: a protocol takes the loop it is created on for its timers and tasks.
        contenders = [endpoint_contender(*item.split("=", 1)) for item in args.pointer]
        contenders.insert(0, hello_contender())
        if args.seconds:
            contender = next(c for c in contenders if c.name == args.profile)
            contender.connect()
            for _ in range(300):
                await contender.call(request)
            print(f"ready: pid {os.getpid()}", file=sys.stderr, flush=True)  # a profiler may attach now
            deadline, count = time.perf_counter() + args.seconds, 0
            while time.perf_counter() < deadline:
                for _ in range(100):
                    await contender.call(request)
                count += 100
                contender.written()
            return {"calls": count}
        per_call = await cpu_per_call(contenders, request, args.calls, args.blocks,
                                      None if args.seconds else args.profile)
        return {"calls_per_block": args.calls, "rounds": args.blocks, "load_1m": os.getloadavg()[0],
                **summary(per_call)}

    emit_json(uvloop.run(run()))


if __name__ == "__main__":
    main()
