"""The channels a notification can travel by; each makes one attempt per ``send``."""
from pipeline.notifications.channels.base import Channel, DeliveryError, is_loopback
from pipeline.notifications.channels.email import EmailChannel, SmtpSettings
from pipeline.notifications.channels.slack import MAX_RETRY_AFTER_SECONDS, SlackChannel, parse_retry_after
from pipeline.notifications.channels.sns import SnsChannel

__all__ = ["MAX_RETRY_AFTER_SECONDS", "Channel", "DeliveryError", "EmailChannel", "SlackChannel", "SmtpSettings",
           "SnsChannel", "is_loopback", "parse_retry_after"]
