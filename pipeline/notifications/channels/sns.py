"""Amazon SNS: one ``publish`` per attempt, with the severity as a message attribute."""
from __future__ import annotations

import hashlib
import re
from typing import Any

from pipeline.notifications.channels.base import DeliveryError
from pipeline.notifications.message import Message


class SnsChannel:
    """SNS ``publish``; boto3 is imported on first use so the local path never loads it."""

    name = "sns"

    _THROTTLING = {"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                   "TooManyRequestsException", "KMSThrottlingException"}

    def __init__(self, topic_arn: str, region: str) -> None:
        self._topic_arn = topic_arn
        arn_parts = topic_arn.split(":")
        # A topic can only be published to in its own region, whatever aws_region says.
        self._region = arn_parts[3] if len(arn_parts) > 5 and arn_parts[3] else region
        self._client: Any = None
        self._client_timeout: float | None = None

    def _sns(self, timeout: float) -> Any:
        """botocore fixes timeouts per client: a new one only when the budget shortens the timeout."""
        if self._client is None or self._client_timeout != timeout:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("sns", region_name=self._region, config=Config(
                connect_timeout=timeout, read_timeout=timeout,
                retries={"total_max_attempts": 1},  # the Notifier retries; two layers would multiply
            ))
            self._client_timeout = timeout
        return self._client

    def send(self, message: Message, timeout: float) -> None:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            ReadTimeoutError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        request: dict[str, Any] = {
            "TopicArn": self._topic_arn,
            "Subject": message.subject,
            "Message": message.plain_text,
            "MessageAttributes": {
                "severity": {"DataType": "String", "StringValue": message.severity},
                "event": {"DataType": "String", "StringValue": message.event},
            },
        }
        if self._topic_arn.endswith(".fifo"):
            # FIFO topics require these; the deduplication id also makes our retries idempotent.
            request["MessageGroupId"] = re.sub(r"[^A-Za-z0-9_-]", "-", message.run_id)[:128] or "run"
            request["MessageDeduplicationId"] = hashlib.sha256(
                f"{message.run_id}:{message.event}".encode()).hexdigest()
        try:
            self._sns(timeout).publish(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            retryable = code in self._THROTTLING or status == 429 or status >= 500
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {code}: {error.get('Message', '')}",
                                retryable=retryable) from None
        except ReadTimeoutError as exc:  # SNS may have published it: a retry could publish it twice
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {exc}; not retried, the message may "
                                f"have been delivered") from None
        except (ConnectTimeoutError, BotoConnectionError) as exc:
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {exc}", retryable=True) from None
        except BotoCoreError as exc:  # no credentials, bad parameters: trying again will not help
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {type(exc).__name__}: {exc}") from None
