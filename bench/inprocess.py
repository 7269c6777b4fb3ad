"""In-process cost of one request through the serving hooks: parse + predict + serialize.

Run as a child with the benchmarked project first on PYTHONPATH, so a patched copy
is measured with its own ``pipeline.container.inference``::

    PYTHONPATH=<project>:<repo> python bench/inprocess.py --model-dir DIR --body FILE --seconds 1
"""
from __future__ import annotations

import argparse
import statistics
import time

from bench.common import emit_json


def measure(model_dir: str, bodies: list[bytes], content_type: str, seconds: float,
            max_calls: int = 200_000) -> dict[str, float]:
    from pipeline.container import inference

    model = inference.model_fn(model_dir)

    def once(body: bytes) -> None:
        rows = inference.input_fn(body, content_type)
        prediction = inference.predict_fn(rows, model)
        inference.output_fn(prediction, "application/json")

    for body in bodies[:3]:  # warm-up: first calls allocate, import lazily
        once(body)
    samples: list[float] = []
    calls = rows = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and calls < max_calls:
        for body in bodies:
            began = time.perf_counter()
            once(body)
            samples.append(time.perf_counter() - began)
            calls += 1
            rows += body.count(b"\n") or 1
    total = sum(samples)
    return {"calls": calls, "median_us": round(statistics.median(samples) * 1e6, 1),
            "mean_us": round(total / calls * 1e6, 1), "rows_per_s": round(rows / total, 1),
            "calls_per_s": round(calls / total, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--body", action="append", required=True, help="request body file (repeatable)")
    parser.add_argument("--content-type", default="text/csv")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    bodies = []
    for path in args.body:
        with open(path, "rb") as handle:
            bodies.append(handle.read())
    emit_json(measure(args.model_dir, bodies, args.content_type, args.seconds))


if __name__ == "__main__":
    main()
