"""What every channel shares: the one-attempt ``send`` contract and its error."""
from __future__ import annotations

import ipaddress
from typing import Protocol

from pipeline.notifications.message import Message


class DeliveryError(Exception):
    """A channel could not deliver; says whether trying again could help and when."""

    def __init__(self, message: str, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    def send(self, message: Message, timeout: float) -> None:
        """Deliver once within ``timeout`` seconds or raise ``DeliveryError``.

        Retrying, and shrinking ``timeout`` to what is left of the run's
        notification budget, are the Notifier's job.
        """


def is_loopback(host: str | None) -> bool:
    """Literal loopback only: a name other than localhost is not resolved, since DNS can lie."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
