"""The webhook receiver: Stripe and OrderCloud deliveries, verified, into the state DB's inbox.

Webhooks are an accelerator and a safety net, never the only path: the polls stay the source of
truth, and the events flow reads the inbox as hints only (every event re-reads its object).
Light on purpose: FastAPI is imported by ``app``, the Stripe SDK and SQLAlchemy only when a
request needs them, so the Airflow plugin that mounts the app loads fast.
"""
