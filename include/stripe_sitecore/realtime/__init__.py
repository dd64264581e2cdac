"""The real-time path: webhook deliveries applied within seconds (docs/realtime.md).

- ``trigger.InboxTrigger`` runs in Airflow's triggerer and fires an asset event when the
  state database's ``webhook_inbox`` has rows newer than the last drain saw (or, with backoff,
  rows a drain left unprocessed);
- ``dags/realtime_order_to_cash.py`` runs on that asset and drains the inbox
  (``drain.drain_inbox``, through ``runtime.realtime_drain``).

This module is light (the DAG file imports it at parse time): names only.
"""

from __future__ import annotations

ASSET_NAME = "stripe_sitecore_webhook_inbox"
ASSET_URI = "stripe-sitecore://state/webhook_inbox"
DAG_ID = "realtime_order_to_cash"
# Where the drain records what it saw (sync_cursors), which the trigger reads.
DRAIN_CURSOR = "realtime.inbox"
