"""gunicorn settings for the local endpoint (``-c python:pipeline.gunicorn_conf``).

gunicorn's master with the endpoint's own uvicorn worker (``pipeline.endpoint_worker``):
the master's HUP replaces workers behind the same listening socket without dropping a
request, each worker is an event loop that slow or idle clients cannot stall, and the
pair measured fastest of the stacks compared in docs/PERFORMANCE.md. uvicorn sets
TCP_NODELAY on every connection, so no 40 ms Nagle stall per response.
"""
import gc
import os

import pipeline.endpoint_worker  # noqa: F401  -- uvicorn, uvloop and httptools, imported once in the master
import pipeline.serving  # noqa: F401  -- import numpy, scikit-learn and falcon once in the master:
# forked workers inherit them, so a worker (re)start costs only the model load.
# The estimator modules a pickled model imports when it is loaded: imported once here and
# shared by every worker, instead of imported again, and held privately, in each of them.
import sklearn.ensemble  # noqa: F401
import sklearn.linear_model  # noqa: F401
import sklearn.pipeline  # noqa: F401
import sklearn.preprocessing  # noqa: F401

# Put everything imported so far out of the collector's reach before the workers fork: a
# worker's garbage collection then never writes to these objects, so their memory pages
# stay shared with the master instead of being copied into every worker (gc.freeze docs).
gc.collect()
gc.freeze()

worker_class = "pipeline.endpoint_worker.EndpointWorker"
accesslog = None
graceful_timeout = 30
timeout = 60
# gunicorn's control socket is one path per user ($HOME/.gunicorn/gunicorn.ctl): every endpoint on the
# machine would claim the same one. Endpoints are managed through the pipeline, never through it.
control_socket_disable = True


def on_reload(server) -> None:  # noqa: ANN001 -- gunicorn's Arbiter
    """Before a HUP's fresh workers start, tell the workers they replace to drain, not drop,
    their kept-alive connections (``pipeline.endpoint_worker``)."""
    for pid in list(server.WORKERS):
        try:
            os.kill(pid, pipeline.endpoint_worker.DRAIN_SIGNAL)
        except ProcessLookupError:
            pass
