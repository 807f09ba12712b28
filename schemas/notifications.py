"""Notifications: what the outbox holds and what an addressee reads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from schemas.common import Output


class NotificationKind(StrEnum):
    task_offered = "task_offered"
    reminder = "reminder"
    task_reassigned = "task_reassigned"
    task_expired = "task_expired"
    deadline_extended = "deadline_extended"
    flagged = "flagged"
    report_overdue = "report_overdue"
    site_proposed = "site_proposed"
    site_overdue = "site_overdue"
    evaluation_requested = "evaluation_requested"
    pilot_attention = "pilot_attention"
    reports_assigned = "reports_assigned"
    account_link = "account_link"  # confirm an e-mail, set or reset a password


class NewNotification(Output):
    """A notification to put in the outbox. `key` is its natural key: the same key twice is
    one notification (a retried activity adds nothing)."""

    key: str
    user_id: str
    kind: NotificationKind
    subject: str
    body: str
    created_at: datetime
    application_id: str | None = None
    task_id: str | None = None


class NotificationPublic(Output):
    """A notification as its addressee sees it."""

    id: int
    kind: NotificationKind
    subject: str
    body: str
    application_id: str | None
    task_id: str | None
    created_at: datetime
    delivered_at: datetime | None


class NotificationPage(Output):
    items: list[NotificationPublic]
    next_cursor: str | None
