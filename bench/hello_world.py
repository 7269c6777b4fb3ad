"""The HTTP stack's own ceiling: a hello-world ASGI app on the endpoint's stack, answering a constant.

    gunicorn --worker-class bench.hello_world.HelloWorker --workers 2 --bind 127.0.0.1:PORT bench.hello_world:app

gunicorn's master and 2 workers, each uvicorn's gunicorn worker (``uvicorn-worker``) on uvloop with
uvicorn's own httptools protocol, no access log and no Server header, as the endpoint's worker is
configured (``pipeline.serving.worker.EndpointWorker``) but without anything of the endpoint's: the app
reads the request body and answers a constant JSON body the size of a single-row prediction. Whatever
the endpoint spends per request beyond this is its own (routing, parsing, the prediction, the answer,
its headers, metrics, capture, its protocol's checks); ``bench/serving.py`` runs this beside the
endpoint and reports endpoint / hello-world.
"""
from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker

ANSWER = b'{"predictions": [0]}'
_START = {"type": "http.response.start", "status": 200,
          "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]}
_BODY = {"type": "http.response.body", "body": ANSWER, "more_body": False}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan is off; anything else is not served
        return
    more = True
    while more:  # the whole request body, as an endpoint must read it
        message = await receive()
        more = message.get("more_body", False)
    await send(_START)
    await send(_BODY)


class HelloWorker(UvicornWorker):
    """uvicorn's gunicorn worker with the endpoint worker's settings, uvicorn's own protocol."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "uvloop", "http": "httptools", "lifespan": "off",
                                     "proxy_headers": False, "server_header": False, "access_log": False}
