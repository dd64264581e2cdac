"""Data alerts raised inside tasks, the one way a flow alerts: thresholds, high-severity flags.

An alert is a WARNING log line with a fixed prefix (so log search and Airflow's log view find
it), a message on every configured alert channel (``stripe_sitecore.alerting``: e-mail, Slack,
webhook) and a value the task returns in its summary.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

LOG_PREFIX = "DATA ALERT"


@dataclass(frozen=True)
class DataAlert:
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    raised_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for XCom and the report): the time as ISO-8601."""
        values = asdict(self)
        values["raised_at"] = self.raised_at.isoformat()
        return values


def data_alert(
    kind: str, message: str, details: dict[str, Any] | None = None, severity: str = "warning"
) -> DataAlert:
    """Raise a data alert: log it at WARNING and return it.

    ``kind`` is a dotted name (``reconciliation.amount_mismatch``, ``fraud.high_severity``);
    ``details`` must be JSON-serialisable and hold no secrets (it is logged as is).
    """
    alert = DataAlert(kind=kind, message=message, details=dict(details or {}))
    log.warning(
        "%s [%s] %s %s",
        LOG_PREFIX,
        kind,
        message,
        json.dumps(alert.details, default=str, sort_keys=True),
    )
    from stripe_sitecore.alerting import send

    send(f"{kind}: {message}", message, severity, details={"kind": kind, **alert.details})
    return alert
