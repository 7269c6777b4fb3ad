"""Shared helpers: processes, memory, load generation (wrk), tables and JSON results.

Every server a benchmark starts is its own session (process group) and is stopped
with the whole group, also on error. Traffic only goes to 127.0.0.1. Every loop
here is bounded in count and in time.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS_DIR = BENCH / "results"
CACHE_DIR = BENCH / ".cache"
HOST = "127.0.0.1"
POST_LUA = BENCH / "post.lua"


# --------------------------------------------------------------------------- results
def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return path


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [f"\n== {title}", line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3g}"
    return str(value)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for package in ("scikit-learn", "numpy", "pandas", "falcon", "gunicorn", "uvicorn", "uvloop", "httptools"):
        try:
            from importlib import metadata

            info[package] = metadata.version(package)
        except Exception:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pipeline"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["git_commit"] = commit + ("+dirty(pipeline/)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# --------------------------------------------------------------------------- project copies
def project_root(patch: str | None, workdir: Path) -> Path:
    """The project to benchmark: this checkout, or a copy of it with ``patch`` applied.

    A patch (``bench/patches/*.diff``) is how a proposed change to the project is
    measured side by side with the current code without editing the checkout.
    """
    if not patch:
        return REPO
    copy = workdir / ("project-" + "+".join(Path(one).stem for one in patch.split(",")))
    if copy.exists():
        return copy
    copy.mkdir(parents=True)
    for name in ("pipeline", "run_pipeline.py", "pipeline_config.json"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, copy / name)
    for one in patch.split(","):  # several patches: applied in the order given
        patch_path = Path(one) if Path(one).is_absolute() else (REPO / one)
        result = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch_path)], cwd=copy,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise SystemExit(f"patch {patch_path} does not apply to the current project:\n"
                             f"{result.stdout}{result.stderr}")
    return copy


def project_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env["PYTHONPATH"] = str(root)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Server:
    """A server process in its own session; ``stop`` ends the whole group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path, log_path: Path,
                 port: int) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.launched_at = time.perf_counter()
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.01) -> float:
        """Seconds from launch to the first 200 on /ping (polled every ``interval``)."""
        assert self.process is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                status, _, _ = http_request(self.port, "GET", "/ping", timeout=1.0)
                if status == 200:
                    return time.perf_counter() - self.launched_at
            except OSError:
                pass
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not ready within {timeout:g}s: {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "no log"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        stop_group(self.process, timeout)
        self.process = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_group(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``process`` (its own session), SIGKILL after ``timeout``."""
    pgid = process.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    # Workers may outlive the master for a moment; make sure nothing of the group is left.
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def descendants(root_pid: int) -> list[int]:
    """``root_pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root_pid]
    while stack and len(found) < 10_000:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def tree_memory(root_pid: int) -> dict[str, Any]:
    """Resident memory of a process tree: the sum of RSS, and of PSS (shared pages split between sharers).

    RSS double-counts the copy-on-write pages that forked workers share with
    their master; PSS does not, so it is the memory the tree really occupies.
    """
    rss = pss = 0
    processes = []
    for pid in descendants(root_pid):
        try:
            fields = {}
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                key, _, value = line.partition(":")
                fields[key.strip()] = int(value.split()[0])  # kB
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
        processes.append({"pid": pid, "name": name, "rss_mb": round(fields.get("Rss", 0) / 1024, 1),
                          "pss_mb": round(fields.get("Pss", 0) / 1024, 1)})
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1), "processes": processes}


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by a process tree's live processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in descendants(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_busy_cores: float, max_wait: float, window: float = 0.5) -> tuple[float, float]:
    """Wait (at most ``max_wait`` s) until the machine's busy CPU over ``window`` is below ``max_busy_cores``.

    Returns (seconds waited, busy cores in the last window). On a machine shared with other
    work this keeps a measured run from starting in the middle of someone else's burst.
    """
    began = time.perf_counter()
    busy_cores = 0.0
    while True:
        busy0, _ = system_cpu()
        time.sleep(window)
        busy1, _ = system_cpu()
        busy_cores = (busy1 - busy0) / window
        if busy_cores <= max_busy_cores or time.perf_counter() - began >= max_wait:
            return time.perf_counter() - began, busy_cores


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- load generation
def wrk_path() -> str | None:
    return shutil.which("wrk")


WRK_MISSING = ("wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) gives the load generator the "
               "figures in docs/PERFORMANCE.md were measured with; falling back to a Python load generator, "
               "whose own CPU cost on a 2-core machine makes every absolute figure lower")


def load_generator_name() -> str:
    return "wrk" if wrk_path() else "python-loadgen (NOT wrk: wrk is missing)"


def run_load(port: int, path: str, body_file: Path, content_type: str, connections: int, duration: float,
             threads: int = 1) -> dict[str, Any]:
    """Closed-loop POST load at ``connections`` concurrent clients for ``duration`` seconds."""
    if wrk_path():
        return _run_wrk(port, path, body_file, content_type, connections, duration, threads)
    return _run_python_load(port, path, body_file.read_bytes(), content_type, connections, duration)


def _run_wrk(port: int, path: str, body_file: Path, content_type: str, connections: int, duration: float,
             threads: int) -> dict[str, Any]:
    threads = max(1, min(threads, connections))
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": content_type}
    command = [wrk_path() or "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
               "--timeout", "10s", "-s", str(POST_LUA), f"http://{HOST}:{port}{path}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in result.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line[len("WRK_JSON "):])
            seconds = raw["duration_us"] / 1e6
            errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors",
                                          "timeouts"))
            return {
                "generator": "wrk", "connections": connections, "threads": threads,
                "seconds": round(seconds, 3), "requests": raw["requests"],
                "rps": round(raw["requests"] / seconds, 1) if seconds else None,
                "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["lat_max_us"] / 1000,
                "mean_ms": round(raw["lat_mean_us"] / 1000, 3), "errors": errors,
                "error_detail": {k: raw[k] for k in ("connect_errors", "read_errors", "write_errors",
                                                     "status_errors", "timeouts")},
            }
    raise RuntimeError(f"wrk gave no result (exit {result.returncode}): {result.stdout[-500:]} {result.stderr[-500:]}")


def _run_python_load(port: int, path: str, body: bytes, content_type: str, connections: int,
                     duration: float) -> dict[str, Any]:
    """Fallback when wrk is missing: one thread per connection, keep-alive when the server allows it."""
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop_at = time.perf_counter() + duration
    max_requests = 2_000_000  # per connection: a hard bound besides the time limit

    def client(index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        done = 0
        while time.perf_counter() < stop_at and done < max_requests:
            began = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=10)
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[index] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except OSError:
                errors[index] += 1
                if conn is not None:
                    conn.close()
                conn = None
            latencies[index].append(time.perf_counter() - began)
            done += 1
        if conn is not None:
            conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=duration + 30)
    seconds = time.perf_counter() - started
    flat = sorted(x for per in latencies for x in per)
    count = len(flat)

    def pct(q: float) -> float | None:
        return round(flat[min(count - 1, int(q * count))] * 1000, 3) if count else None

    return {"generator": "python-loadgen", "connections": connections, "threads": connections,
            "seconds": round(seconds, 3), "requests": count, "rps": round(count / seconds, 1) if seconds else None,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "mean_ms": round(sum(flat) / count * 1000, 3) if count else None, "errors": sum(errors)}


# --------------------------------------------------------------------------- child processes
def run_child(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 1800.0) -> dict[str, Any]:
    """Run a child to completion: wall seconds, peak RSS (its own, from wait4) and its output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   start_new_session=True)
        deadline = began + timeout
        status = rusage = None
        while time.perf_counter() < deadline:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.005)
        else:
            stop_group(process, 5)
            raise RuntimeError(f"{command[:4]} did not finish within {timeout:g}s")
        seconds = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # anything it left in its group
        out.seek(0)
        err.seek(0)
        return {"seconds": seconds, "returncode": process.returncode,
                "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1) if rusage else None,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


@contextlib.contextmanager
def temp_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def python_child_json(stdout: str) -> dict[str, Any]:
    """The last line of a child's stdout that starts with ``BENCH_JSON``."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"child printed no BENCH_JSON line: {stdout[-800:]}")


def emit_json(data: dict[str, Any]) -> None:
    sys.stdout.write("BENCH_JSON " + json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def add_timer(totals: dict[str, float], owner: object, name: str, label: str | None = None) -> None:
    """Wrap ``owner.name`` so that the seconds spent in it add up in ``totals[label or name]``."""
    import functools

    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            key = label or name
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - began

    setattr(owner, name, wrapper)
