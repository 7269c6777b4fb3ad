"""gunicorn settings for the local endpoint (``-c python:pipeline.gunicorn_conf``).

Why gunicorn with sync workers: it is what SageMaker's scikit-learn container
runs, its HUP reload replaces workers behind the same listening socket without
dropping a request, and it measured fastest here for CPU-bound single-row
predictions (see docs/PERFORMANCE.md). Its listener sets TCP_NODELAY, so no
40 ms Nagle stall per response.
"""
import gc

# forked workers inherit them, so a worker (re)start costs only the model load.
# The estimator modules a pickled model imports when it is loaded: imported once here and
# shared by every worker, instead of imported again, and held privately, in each of them.
import sklearn.ensemble
import sklearn.linear_model
import sklearn.pipeline
import sklearn.preprocessing  # noqa: F401

import pipeline.serving  # noqa: F401  -- import numpy, scikit-learn and falcon once in the master:

# Put everything imported so far out of the collector's reach before the workers fork: a
# worker's garbage collection then never writes to these objects, so their memory pages
# stay shared with the master instead of being copied into every worker (gc.freeze docs).
gc.collect()
gc.freeze()

worker_class = "sync"
accesslog = None
graceful_timeout = 30
timeout = 60


def when_ready(server) -> None:
    """A server the store does not own yet dies with the pipeline that started it."""
    import os
    import signal

    from pipeline.backends.server_processes import OWNER_ENV, watch_owner

    def orphaned() -> None:
        server.log.warning("the pipeline that started this server has died: shutting down")
        os.kill(os.getpid(), signal.SIGQUIT)  # gunicorn's quick shutdown

    watch_owner(os.environ.get(OWNER_ENV), orphaned)
