"""gunicorn settings for the local endpoint (``-c python:pipeline.gunicorn_conf``).

Why gunicorn with sync workers: it is what SageMaker's scikit-learn container
runs, its HUP reload replaces workers behind the same listening socket without
dropping a request, and it measured fastest here for CPU-bound single-row
predictions (see docs/PERFORMANCE.md). Its listener sets TCP_NODELAY, so no
40 ms Nagle stall per response.
"""
import pipeline.serving  # noqa: F401  -- import numpy, scikit-learn and falcon once in the master:
# forked workers inherit them, so a worker (re)start costs only the model load.

worker_class = "sync"
accesslog = None
graceful_timeout = 30
timeout = 60
