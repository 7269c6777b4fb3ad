"""A py-spy profile of an endpoint worker, per component of a request.

    py-spy record -p WORKER_PID -r 500 -d 10 -f raw -o worker.raw     # while wrk loads the endpoint
    python -m bench.profile_components worker.raw [more.raw ...]

py-spy's raw output is one line per distinct stack (``frame;frame;...;leaf COUNT``). Each sample of the
worker's main thread (the event loop) is charged to the first component found walking its stack from
the leaf towards the root (``COMPONENTS``, matched on the function and file of each frame), so a component
is what its own frames cost, the frames below it that no other component claims included (a numpy call
inside the prediction is the prediction's). Samples whose leaf is the event loop's own C code (uvloop:
waiting in epoll, reading and writing sockets) are ``event loop (uvloop, system calls, idle)``. The
capture writer's thread is reported apart (it runs beside the loop, on the other core when there is one).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable

# (component, pattern on "function (file)"), the first match walking from the leaf wins.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("capture: records written (writer thread)", r"CaptureWriter\.(_run|flush|_append|_write)|capture_line_of"),
    ("metrics", r"EndpointMetrics\.|_Histogram\.|metrics\.py"),
    ("capture: queued per request", r"CaptureWriter\.offer"),
    ("telemetry: inference id, test header", r"EndpointTelemetry\.|telemetry\.py"),
    ("parse the body (input_fn)", r"input_fn|decode_body|payloads\.py.*\b(_unwrap|_csv|_fast_csv)"),
    ("the prediction (predict_fn)", r"predict_fn|fast_predict\.py|_compile\.<locals>"),
    ("the answer (output_fn)", r"output_fn|negotiate"),
    ("routing a bake (Router, version headers)", r"\bRouter\.|VersionHeaders|CountedBy|routing\.py"),
    ("the hot path's own (headers, token, response)", r"Invocations\.hot|_answer_hot"),
    ("the resource's own (on_post: checks, headers)", r"_Invocations\.|client_inference_id|token_matches"),
    ("falcon (request, response, routing, middleware)", r"falcon/"),
    ("the write (one per answer)", r"_OneWritePerResponse|\bwrite\b"),
    ("uvicorn's request cycle (task, receive, send)", r"RequestResponseCycle|_start_asgi_task|HttpToolsProtocol\."
     r"(on_response_complete|on_headers_complete)"),
    ("the worker's timers (deadline, keep-alive)", r"_arm|_disarm|_unset_keepalive|_too_slow|_expire"),
    ("HTTP parsing and the worker's head checks", r"EndpointProtocol\.|HttpToolsProtocol\.|worker\.py|"
     r"httptools_impl\.py"),
    ("event loop (uvloop, system calls, idle)", r"Runner\.run|asyncio/runners\.py|uvloop"),
)
_PATTERNS = [(name, re.compile(pattern)) for name, pattern in COMPONENTS]
_FRAME = re.compile(r"(.*) \((.*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    function, path = match.groups()
    return f"{function} ({re.sub(r'.*/(site-packages|pipeline|bench)/', '', path)})"


def component_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in _PATTERNS:
            if pattern.search(frame):
                return name
    return "other"


def read_raw(lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        line = line.strip()
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        stacks[tuple(_short(frame) for frame in frames.split(";"))] += int(count)
    return stacks


def components(stacks: Counter[tuple[str, ...]]) -> tuple[Counter[str], Counter[str]]:
    """Samples per component of the event loop's thread, and of the capture writer's thread."""
    loop: Counter[str] = Counter()
    writer: Counter[str] = Counter()
    for stack, count in stacks.items():
        if any("CaptureWriter._run" in frame for frame in stack):
            waiting = stack[-1].startswith(("Condition.wait", "Event.wait"))
            writer["waiting" if waiting else component_of(list(stack))] += count
        elif any("Thread._bootstrap" in frame for frame in stack):
            writer["other threads"] += count
        else:
            loop[component_of(list(stack))] += count
    return loop, writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="+", help="py-spy record -f raw outputs")
    parser.add_argument("--requests", type=int, help="requests the worker answered while sampled: prints us per "
                        "request too (the samples' share of the sampled time)")
    parser.add_argument("--seconds", type=float, default=10.0, help="the sampled duration (with --requests)")
    args = parser.parse_args()
    for path in args.raw:
        with open(path) as handle:
            loop, writer = components(read_raw(handle))
        total = sum(loop.values())
        print(f"== {path}: {total} samples of the event loop's thread")
        for name, count in loop.most_common():
            share = count / total
            per_request = f"  {share * args.seconds / args.requests * 1e6:7.1f} us" if args.requests else ""
            print(f"  {100 * share:5.1f}%{per_request}  {name}")
        busy = {name: count for name, count in writer.items() if name != "waiting"}
        print(f"  capture writer thread: {sum(busy.values())} busy samples ({dict(busy)})")


if __name__ == "__main__":
    main()
