"""Email over SMTP, configured from the environment where CI systems keep mail credentials."""
from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from pipeline.notifications.channels.base import DeliveryError, is_loopback
from pipeline.notifications.message import Message

log = logging.getLogger("pipeline.notifications")


@dataclass(frozen=True)
class SmtpSettings:
    """SMTP settings from the environment, where CI systems keep mail credentials."""

    host: str
    port: int
    security: str  # ssl | starttls | none
    user: str | None
    password: str | None = field(repr=False)  # a logged repr must not carry it
    sender: str = "mlops-pipeline@localhost"

    _PORT_FOR = {"ssl": 465, "starttls": 587, "none": 25}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings:
        """Raises ValueError naming the variable when a value is unusable."""
        host = (env.get("SMTP_HOST") or "").strip()
        if not host:
            raise ValueError("SMTP_HOST is not set")
        raw_security = (env.get("SMTP_SECURITY") or "").strip().lower()
        if raw_security and raw_security not in cls._PORT_FOR:
            raise ValueError(f"SMTP_SECURITY={raw_security!r}: expected ssl, starttls or none")
        raw_port = (env.get("SMTP_PORT") or "").strip()
        if raw_port:
            try:
                port = int(raw_port)
            except ValueError:
                raise ValueError(f"SMTP_PORT={raw_port!r}: expected a port number") from None
            if not 0 < port < 65536:
                raise ValueError(f"SMTP_PORT={raw_port!r}: expected a port number between 1 and 65535")
        else:
            port = cls._PORT_FOR[raw_security or "none"]
        security = raw_security or {465: "ssl", 587: "starttls"}.get(port, "none")
        user = env.get("SMTP_USER") or None
        sender = (env.get("SMTP_FROM") or "").strip()
        if not sender:
            sender = user if user and "@" in user else "mlops-pipeline@localhost"
        return cls(host, port, security, user, password=env.get("SMTP_PASSWORD") or None, sender=sender)


class EmailChannel:
    """Plain-text email over SMTP; the password only ever travels encrypted (or to loopback)."""

    name = "email"

    def __init__(self, env: Mapping[str, str], recipients: Iterable[str]) -> None:
        self._recipients = [r for r in recipients if r]
        self.settings: SmtpSettings | None = None
        self.settings_error: str | None = None
        try:
            self.settings = SmtpSettings.from_env(env)
        except ValueError as exc:
            self.settings_error = f"email not sent: {exc}"

    def _refusal(self, settings: SmtpSettings) -> str | None:
        if settings.user and settings.password and settings.security == "none" and not is_loopback(settings.host):
            return (f"refusing to send SMTP_PASSWORD unencrypted to {settings.host}:{settings.port}; "
                    "set SMTP_SECURITY=ssl or starttls (or use a loopback relay)")
        return None

    def _email(self, message: Message, settings: SmtpSettings) -> EmailMessage:
        email = EmailMessage()
        email["From"] = settings.sender
        email["To"] = ", ".join(self._recipients)
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=True)
        # An explicit domain: make_msgid's default asks DNS for our FQDN, which can hang.
        email["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or "localhost")
        email["X-MLOps-Event"] = message.event
        email["X-MLOps-Severity"] = message.severity
        email["X-MLOps-Run"] = message.run_id
        email.set_content(message.plain_text)
        return email

    def send(self, message: Message, timeout: float) -> None:
        if self.settings is None:
            raise DeliveryError(self.settings_error or "email not sent: SMTP is not configured")
        settings = self.settings
        refusal = self._refusal(settings)
        if refusal:
            raise DeliveryError(refusal)
        where = f"{settings.host}:{settings.port} ({settings.security})"
        try:
            self._deliver(self._email(message, settings), settings, timeout)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login as {settings.user} rejected by {where}: {self._reply(exc)}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"all recipients refused by {where}: {', '.join(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            # SMTP's 4xx replies mean "try again later", 5xx mean "never".
            raise DeliveryError(f"SMTP error from {where}: {self._reply(exc)}",
                                retryable=400 <= exc.smtp_code < 500) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where}: {exc} (does the server offer STARTTLS?)") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise DeliveryError(f"{where} disconnected: {exc}", retryable=True) from None
        except ssl.SSLError as exc:  # a certificate or protocol mismatch will not fix itself
            raise DeliveryError(f"TLS with {where} failed: {exc}") from None
        except smtplib.SMTPException as exc:  # a protocol problem: the same server will say the same again
            raise DeliveryError(f"SMTP error from {where}: {type(exc).__name__}: {exc}") from None
        except OSError as exc:  # refused, unreachable, timed out: the network may recover
            raise DeliveryError(f"cannot reach {where}: {type(exc).__name__}: {exc}", retryable=True) from None

    def _deliver(self, email: EmailMessage, settings: SmtpSettings, timeout: float) -> None:
        context = ssl.create_default_context()  # verifies the certificate and host name
        if settings.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout,
                                                  context=context)
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        try:
            if settings.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            refused = smtp.send_message(email, from_addr=settings.sender, to_addrs=self._recipients)
            if refused:
                log.warning("email: %d recipient(s) refused: %s", len(refused), ", ".join(refused))
        finally:
            # Once the message is accepted a failing QUIT must not look like a failed delivery
            # (a retry would send it twice), so QUIT errors are swallowed here.
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    @staticmethod
    def _reply(exc: smtplib.SMTPResponseException) -> str:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {' '.join(text.split())}"
