"""gunicorn settings for the local endpoint (``-c python:pipeline.serving.gunicorn_conf``).

gunicorn's master with the endpoint's own uvicorn worker (``pipeline.serving.worker``):
the master's HUP replaces workers behind the same listening socket without dropping a
request, each worker is an event loop that slow or idle clients cannot stall, and the
pair measured fastest of the stacks compared in docs/PERFORMANCE.md. uvicorn sets
TCP_NODELAY on every connection, so no 40 ms Nagle stall per response.
"""
import gc
import os
import signal
import time

# Imported once in the master, so forked workers inherit them and a worker (re)start costs only
# the model load: uvicorn, uvloop and httptools; numpy, scikit-learn and falcon; and the estimator
# modules a pickled model imports when it is loaded (shared by every worker instead of imported
# again, and held privately, in each of them); and prometheus_client, whose metrics are multiprocess
# ones because PROMETHEUS_MULTIPROC_DIR is set when it is first imported.
import prometheus_client.multiprocess  # noqa: F401
import sklearn.ensemble
import sklearn.linear_model
import sklearn.pipeline
import sklearn.preprocessing  # noqa: F401

import pipeline.serving.app
import pipeline.serving.metrics
import pipeline.serving.telemetry
import pipeline.serving.worker
from pipeline.state.processes import OWNER_ENV, watch_owner

# Put everything imported so far out of the collector's reach before the workers fork: a
# worker's garbage collection then never writes to these objects, so their memory pages
# stay shared with the master instead of being copied into every worker (gc.freeze docs).
gc.collect()
gc.freeze()

worker_class = "pipeline.serving.worker.EndpointWorker"
accesslog = None
graceful_timeout = 30
timeout = 60
# gunicorn's control socket is one path per user ($HOME/.gunicorn/gunicorn.ctl): every endpoint on the
# machine would claim the same one. Endpoints are managed through the pipeline, never through it.
control_socket_disable = True
ORPHAN_GRACE_SECONDS = 5.0  # how long an orphaned server's processes get to stop before SIGKILL


def on_starting(server) -> None:
    """The metrics directory starts empty: another server's files would be summed with ours."""
    pipeline.serving.metrics.prepare_metrics_directory()


def child_exit(server, worker) -> None:
    """A worker that exited no longer counts as live (its counters stay in the totals)."""
    pipeline.serving.metrics.worker_exited(worker.pid)


def on_exit(server) -> None:
    """The workers have exited: the server's metrics directory goes with it."""
    pipeline.serving.metrics.remove_metrics_directory()


def when_ready(server) -> None:
    """A server the store does not own yet dies with the pipeline that started it."""

    def orphaned() -> None:
        server.log.warning("the pipeline that started this server has died: shutting down")
        # The whole group at once (uvicorn's workers stop on SIGTERM, not on gunicorn's quick-shutdown
        # SIGQUIT), and SIGKILL for whatever is still there a few seconds later.
        group = os.getpgrp()
        os.killpg(group, signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_SECONDS)
        os.killpg(group, signal.SIGKILL)

    watch_owner(os.environ.get(OWNER_ENV), orphaned)


def on_reload(server) -> None:
    """Before a HUP's fresh workers start, tell the workers they replace to drain, not drop,
    their kept-alive connections (``pipeline.serving.worker``)."""
    for pid in list(server.WORKERS):
        try:
            os.kill(pid, pipeline.serving.worker.DRAIN_SIGNAL)
        except ProcessLookupError:
            pass
