"""The local backend: a gunicorn endpoint on loopback (``backend``), the servers it starts (``servers``)
and the traffic counts a bake reads from them (``traffic``)."""
from pipeline.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
