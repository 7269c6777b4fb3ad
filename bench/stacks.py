"""Serving stacks compared: the candidates for the endpoint's HTTP stack, same app logic, same load.

    python -m bench.stacks                    # 5 s per load run
    python -m bench.stacks --quick            # 3 s runs

Candidates (2 workers each, the logistic-regression model, single-row JSON and 1,000-row CSV
bodies, wrk on the same cores):

- ``gunicorn-sync``: the endpoint as it was before (gunicorn sync workers, falcon's WSGI app),
  taken from git (``--wsgi-rev``, the last commit that served it);
- ``nginx+gunicorn-sync``: the same behind nginx (Debian's package, as SageMaker's scikit-learn
  container does): nginx buffers requests, gunicorn listens on a unix socket; skipped when
  ``nginx`` is not installed;
- ``granian-wsgi``: granian (Rust, hyper) running the same WSGI app (granian is not a requirement of
  the project: ``.venv/bin/pip install granian`` to include its two candidates);
- ``granian-asgi``: granian running the endpoint's falcon ASGI app;
- ``gunicorn+uvicorn``: the endpoint as it is (gunicorn master, ``pipeline.serving.worker``).

For each: requests/s, p99 and requests per CPU-second of the whole server (nginx included),
startup to the first 200 on /ping and PSS after warm-up. Results: bench/results/stacks.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    HOST,
    REPO,
    Server,
    free_port,
    load_generator_name,
    machine_info,
    print_table,
    project_env,
    run_load,
    temp_dir,
    tree_cpu_seconds,
    tree_memory,
    wait_for_quiet,
    write_result,
)
from bench.serving import fit_models

GRANIAN = [sys.executable, "-m", "granian"]
NGINX_CONF = """worker_processes 1; user root; error_log {dir}/error.log; pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  client_header_timeout 5s; client_body_timeout 5s; client_max_body_size 6m; keepalive_timeout 5s;
  upstream app {{ server unix:{dir}/app.sock; }}
  server {{ listen {host}:{port}; location / {{ proxy_pass http://app; proxy_buffering on; }} }}
}}
"""


class Stack:
    """One candidate: its processes, how to reach it, what it costs."""

    def __init__(self, name: str, servers: list[Server], port: int, extra: subprocess.Popen[bytes] | None = None,
                 extra_command: list[str] | None = None) -> None:
        self.name, self.servers, self.port = name, servers, port
        self.extra_command = extra_command
        self.extra: subprocess.Popen[bytes] | None = extra

    def start(self) -> float:
        began = time.perf_counter()
        for server in self.servers:
            server.start()
        if self.extra_command:
            self.extra = subprocess.Popen(self.extra_command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        self.servers[-1].wait_ready(timeout=180)  # the last server answers on self.port
        return time.perf_counter() - began

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.servers if s.process] + ([self.extra.pid] if self.extra else [])

    def cpu(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self.pids())

    def pss(self) -> float:
        return round(sum(tree_memory(pid)["pss_mb"] for pid in self.pids()), 1)

    def stop(self) -> None:
        if self.extra is not None:
            self.extra.terminate()
            try:
                self.extra.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.extra.kill()
            self.extra = None
        for server in self.servers:
            server.stop()


def _old_project(rev: str, workdir: Path) -> Path:
    root = workdir / f"project-{rev}"
    root.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "pipeline"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def stacks(pointer: Path, old_root: Path, workdir: Path, workers: int) -> dict[str, Any]:
    env_new = project_env(REPO, {"MLOPS_MODEL_POINTER": str(pointer)})
    env_old = project_env(old_root, {"MLOPS_MODEL_POINTER": str(pointer)})
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:pipeline.serving.gunicorn_conf", "--workers",
                str(workers)]
    # the sync candidates run an older revision of the project, laid out as it was then
    gunicorn_old = [sys.executable, "-m", "gunicorn", "-c", "python:pipeline.gunicorn_conf", "--workers", str(workers)]
    makers: dict[str, Any] = {}

    def plain(name: str, command_for_port: Any, env: dict[str, str], root: Path) -> Any:
        def make() -> Stack:
            port = free_port()
            return Stack(name, [Server(name, command_for_port(port), env, root, workdir / f"{name}.log", port)], port)
        return make

    makers["gunicorn-sync"] = plain("gunicorn-sync", lambda p: [*gunicorn_old, "--bind", f"{HOST}:{p}",
                                                                "pipeline.serving:create_app()"], env_old, old_root)
    if shutil.which("nginx"):
        def nginx() -> Stack:
            port = free_port()
            directory = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
            (directory / "nginx.conf").write_text(NGINX_CONF.format(dir=directory, host=HOST, port=port))
            app = Server("nginx-app", [*gunicorn_old, "--bind", f"unix:{directory}/app.sock",
                                       "pipeline.serving:create_app()"], env_old, old_root, workdir / "nginx-app.log",
                         port)
            return Stack("nginx+gunicorn-sync", [app], port, extra_command=[
                "nginx", "-c", str(directory / "nginx.conf"), "-p", str(directory), "-g", "daemon off;"])
        makers["nginx+gunicorn-sync"] = nginx
    if importlib.util.find_spec("granian") is None:
        print("granian is not installed (`.venv/bin/pip install granian`): its candidates are skipped", flush=True)
        makers["gunicorn+uvicorn"] = plain(
            "gunicorn+uvicorn", lambda p: [*gunicorn, "--bind", f"{HOST}:{p}", "pipeline.serving.app:create_app()"],
            env_new, REPO)
        return makers
    granian = [*GRANIAN, "--factory", "--host", HOST, "--workers", str(workers), "--no-ws", "--log-level", "warning"]
    makers["granian-wsgi"] = plain("granian-wsgi", lambda p: [*granian, "--port", str(p), "--interface", "wsgi",
                                                              "pipeline.serving:create_app"], env_old, old_root)
    makers["granian-asgi"] = plain("granian-asgi", lambda p: [*granian, "--port", str(p), "--interface", "asgi",
                                                              "--loop", "uvloop", "pipeline.serving.app:create_app"],
                                   env_new, REPO)
    makers["gunicorn+uvicorn"] = plain("gunicorn+uvicorn", lambda p: [*gunicorn, "--bind", f"{HOST}:{p}",
                                                                      "pipeline.serving.app:create_app()"],
                                       env_new, REPO)
    return makers


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wsgi-rev", default="50ffcb4",
                        help="git revision whose pipeline/ served the WSGI app (default: the last one that did)")
    parser.add_argument("--output", default="stacks")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    results: dict[str, Any] = {"benchmark": "stacks", "machine": machine_info(),
                               "load_generator": load_generator_name(), "duration_s": args.duration,
                               "wsgi_rev": args.wsgi_rev, "stacks": {}}
    with temp_dir("bench-stacks-") as workdir:
        info = fit_models(workdir, ["logistic_regression"], with_mlflow=False)["logistic_regression"]
        single = info["bodies"]["single"]["endpoint"]
        rows1000 = info["bodies"]["rows1000"]["endpoint"]
        makers = stacks(info["pointer"], _old_project(args.wsgi_rev, workdir), workdir, args.workers)
        running: dict[str, Stack] = {}
        try:
            for name, make in makers.items():
                stack = make()
                startup = stack.start()
                running[name] = stack
                run_load(stack.port, "/invocations", *single, 8, 1.0)
                results["stacks"][name] = {"startup_s": round(startup, 2), "pss_mb": stack.pss()}
            for label, body, connections in (("single_c8", single, 8), ("single_c1", single, 1),
                                             ("rows1000_c1", rows1000, 1)):
                for name, stack in running.items():
                    wait_for_quiet(0.3, 20.0)
                    before = stack.cpu()
                    measured = run_load(stack.port, "/invocations", *body, connections, args.duration)
                    cpu = stack.cpu() - before
                    measured["req_per_cpu_s"] = round(measured["requests"] / cpu, 1) if cpu > 0 else None
                    results["stacks"][name][label] = measured
                    print(f"  {name:22s} {label:12s} {measured['rps']:>8,.0f} req/s  p99 {measured['p99_ms']:.2f} ms  "
                          f"{measured['req_per_cpu_s'] or 0:>7,.0f} req/CPU-s  errors {measured['errors']}", flush=True)
        finally:
            for stack in running.values():
                stack.stop()
    write_result(args.output, results)
    print_table(f"Serving stacks ({results['load_generator']}, {args.duration:g} s per run)",
                ["stack", "1-row c8 req/s", "c8 p99 ms", "1-row c8 req/CPU-s", "1-row c1 req/s", "1-row c1 req/CPU-s",
                 "1000-row req/s", "1000-row req/CPU-s", "startup s", "PSS MB"],
                [[name, r["single_c8"]["rps"], r["single_c8"]["p99_ms"], r["single_c8"]["req_per_cpu_s"],
                  r["single_c1"]["rps"], r["single_c1"]["req_per_cpu_s"], r["rows1000_c1"]["rps"],
                  r["rows1000_c1"]["req_per_cpu_s"], r["startup_s"], r["pss_mb"]]
                 for name, r in results["stacks"].items()])
    return results


if __name__ == "__main__":
    main()
