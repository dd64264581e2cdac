"""The integration's state database: models, Alembic migrations, repositories."""

from stripe_sitecore.store.state import ORDER_STATE_RANK, OrderLink, StateStore, StateTx

__all__ = ["ORDER_STATE_RANK", "OrderLink", "StateStore", "StateTx"]
