"""Daily reports over Stripe, Sitecore and our own ledger: reconciliation and fraud flags.

The flows (``stripe_sitecore.flows.reconciliation``, ``stripe_sitecore.flows.fraud``) call into
this package: the report day and its settings, readers that normalise vendor objects into rows,
the SQL that matches them, the fraud rules, and the CSV/HTML rendering.
"""
