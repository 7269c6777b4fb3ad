"""CPU a single-row request costs inside the endpoint's app holding one model, a 90/10 split, a shadow.

Run as a child of ``bench.rollout`` with the benchmarked project first on PYTHONPATH and
``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client picks its multiprocess mode when first
imported)::

    PYTHONPATH=<project>:<repo> PROMETHEUS_MULTIPROC_DIR=DIR python bench/rollout_inprocess.py \\
        --pointer one=P1 --pointer split=P2 --pointer shadow=P3 --body FILE

The apps are built by ``create_app`` in this one process from the pointers the servers of
``bench.rollout`` read and driven in alternating blocks by ``bench/asgi_blocks.py`` (which says how):
what a split or a shadow adds to a request, in microseconds, whatever the foreign load on a shared
machine. One thing the apps alone leave out: the worker sends the version headers of a one-model
endpoint itself (pre-encoded bytes), while during a split the app sets them per response; the split's
added cost here is therefore a slight overestimate.

``--profile NAME`` runs cProfile over NAME's blocks and prints its 25 most expensive functions
(cumulative and own time) on stderr.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.asgi_blocks import compared, cpu_per_call
from bench.common import emit_json


def build_apps(pointers: dict[str, Path]) -> dict[str, Any]:
    from pipeline.serving.app import create_app

    return {name: create_app(str(path)) for name, path in pointers.items()}


async def run(apps: dict[str, Any], body: bytes, content_type: str, calls: int, blocks: int,
              profile: str | None) -> dict[str, Any]:
    per_call = await cpu_per_call(apps, body, content_type, calls, blocks, profile)
    names = list(apps)  # each against the first (one model)
    return {"calls_per_block": calls, "rounds": blocks,
            **compared(per_call, [(name, names[0]) for name in names[1:]])}


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
