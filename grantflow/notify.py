"""Delivering notifications: the outbox rows go out through one `Sender`.

The log sender is the default (and what `make run` uses); SMTP is used when
`GRANTFLOW_SMTP_HOST` is set. A sender only sends: store/notifications.py decides what is due
and marks it delivered. Delivery is at least once: a delivery that dies between a send and its
record sends that notification again, so a message carries an id of its notification's own."""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import structlog

from grantflow.settings import Settings
from schemas.notifications import NotificationPublic

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Recipient:
    user_id: str
    name: str
    email: str | None


class Sender(Protocol):
    async def send(self, notification: NotificationPublic, recipient: Recipient) -> None:
        """Deliver one notification; raise to have it retried."""


class LogSender:
    """Writes each notification to the log: enough for development and the simulator."""

    async def send(self, notification: NotificationPublic, recipient: Recipient) -> None:
        # The user id, never the name or address: logs are no place for personal data.
        log.info(
            "notification",
            user_id=recipient.user_id,
            kind=notification.kind.value,
            subject=notification.subject,
        )


class SmtpSender:
    """Sends e-mail through an SMTP relay; a user without an address is logged, not failed."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host
        self._settings = settings

    def message(self, notification: NotificationPublic, recipient: Recipient) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._settings.smtp_from
        msg["To"] = f"{recipient.name} <{recipient.email}>"
        msg["Subject"] = notification.subject
        # The notification's own id, the same on every send of it: a copy sent again after a
        # crash is recognised (and shown once) by the relay and the mail client.
        msg["Message-ID"] = (
            f"<grantflow-{notification.id}@{self._settings.smtp_from.split('@')[-1]}>"
        )
        msg.set_content(notification.body)
        return msg

    async def send(self, notification: NotificationPublic, recipient: Recipient) -> None:
        if not recipient.email:
            log.info("notification without address", user_id=recipient.user_id)
            return
        await asyncio.to_thread(self._send, self.message(notification, recipient))

    def _send(self, msg: EmailMessage) -> None:
        s = self._settings
        assert s.smtp_host
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=20) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_user and s.smtp_password:
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(msg)


def sender_from_settings(settings: Settings) -> Sender:
    return SmtpSender(settings) if settings.smtp_host else LogSender()
