"""Airflow pools, one per external API: the single place their names, sizes and purpose live.

A pool slot is one running task, and each task keeps at most ``flows.common.MAX_WORKERS``
requests in flight, so the slots bound the request rate a deployment can put on each API whatever
mix of live runs, reruns and backfills is running. The slot counts leave room for every scheduled
DAG's live run next to a backfill of ``--max-active-runs 2``.

``python -m stripe_sitecore.pools`` prints them in the format ``airflow pools import`` reads:
the run script, the compose init service and the test stacks create them from that output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolSpec:
    name: str
    slots: int
    description: str


STRIPE_API = "stripe_api"
SITECORE_API = "sitecore_api"
ERP_API = "erp_api"

POOLS: tuple[PoolSpec, ...] = (
    # Test mode allows about 25 requests/s and live mode 100: four tasks of eight threads each
    # stay under the live limit with the clients' own back-off taking the rest.
    PoolSpec(STRIPE_API, 4, "Tasks calling the Stripe API (rate limit ~100 req/s live, 25 test)"),
    # One pool whichever backend the deployment uses: OrderCloud documents no limit but its
    # order search lags under load; an XC Commerce Engine is often the merchant's own, small box.
    PoolSpec(SITECORE_API, 4, "Tasks reading or writing the Sitecore backend (OrderCloud or XC)"),
    PoolSpec(ERP_API, 2, "Tasks posting orders to the ERP"),
)
POOL_NAMES = tuple(pool.name for pool in POOLS)


def as_import_document() -> dict[str, dict]:
    """The pools as ``airflow pools import FILE`` and ``airflow pools export`` spell them."""
    return {
        pool.name: {"slots": pool.slots, "description": pool.description, "include_deferred": False}
        for pool in POOLS
    }


def as_rest_bodies() -> list[dict]:
    """Bodies for ``POST /api/v2/pools`` (or ``PATCH /api/v2/pools/{name}``)."""
    return [
        {"name": p.name, "slots": p.slots, "description": p.description, "include_deferred": False}
        for p in POOLS
    ]


if __name__ == "__main__":
    print(json.dumps(as_import_document(), indent=2))
