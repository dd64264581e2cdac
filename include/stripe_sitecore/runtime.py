"""The glue between an Airflow task and a flow, for every DAG: the run's window or day, the
connections to clients, the configured Sitecore backend, and errors a retry cannot cure turned
into ``AirflowFailException``.

Imported inside tasks only (it pulls in the Stripe SDK and SQLAlchemy).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from stripe_sitecore.backends import UnknownBackend, backend_from_connection
from stripe_sitecore.backends.base import SitecoreBackend, SitecoreConfigError
from stripe_sitecore.errors import ConfigurationError
from stripe_sitecore.flows.common import RunSummary, Window
from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.hooks.stripe import StripeHook
from stripe_sitecore.mapping import MappingError
from stripe_sitecore.store.state import StateStore

if TYPE_CHECKING:
    from stripe_sitecore.reports.period import ReportPeriod
    from stripe_sitecore.reports.settings import FraudSettings, ReconciliationSettings

log = logging.getLogger(__name__)

# Wrong configuration stays wrong on retry: these end the task at once, saying what to fix.
CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (
    # A connection the DAG needs is not defined: retrying with backoff only delays the news.
    AirflowNotFoundException,
    MappingError,
    ConfigurationError,
    SitecoreConfigError,
    UnknownBackend,
)


def window_from_context(context: dict[str, Any], overlap: timedelta, default_length: timedelta):
    """The run's data interval; a manual run without one reads the interval ending at run_after."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start == end:
        end = context["dag_run"].run_after
        start = end - default_length
    return Window(start=start, end=end, overlap=overlap)


def advance_cursor(store, stream: str, window) -> None:
    """Record how far a stream has read; a backfill of older windows never moves it back."""
    with store.begin() as tx:
        current = tx.get_cursor(stream)
        if current is None or datetime.fromisoformat(current) < window.end:
            tx.set_cursor(stream, window.end.isoformat())


@contextmanager
def state_store(*config_errors: type[Exception]) -> Iterator[StateStore]:
    """The state store for one task; errors a retry cannot cure fail the task at once.

    A broken mapping file (or another configuration error) stays broken on retry, so it ends the
    task without retries, with the file, line and problem in the message.
    """
    store = StateStoreHook().get_conn()
    try:
        yield store
    except (*CONFIGURATION_ERRORS, *config_errors) as exc:
        raise AirflowFailException(str(exc)) from exc
    finally:
        store.dispose()


@contextmanager
def sitecore_backend() -> Iterator[SitecoreBackend]:
    """The deployment's Sitecore backend (Variable ``stripe_sitecore_backend``), its client made
    from its connection; a wrong setting or connection fails the task at once."""
    try:
        backend = backend_from_connection()
    except (*CONFIGURATION_ERRORS, ValueError) as exc:
        raise AirflowFailException(str(exc)) from exc
    try:
        yield backend
    finally:
        backend.close()


def finished(summary: RunSummary, dag_id: str) -> dict[str, int]:
    """Fail the task if records failed (Airflow retries it); else its summary for XCom."""
    summary.raise_if_failed(dag_id)
    return summary.as_dict()


# --- order to cash ------------------------------------------------------------------------


def orders_to_stripe(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows.orders_to_stripe import ORDER_LIST_OVERLAP, sync_orders_to_stripe

    window = window_from_context(context, ORDER_LIST_OVERLAP, default_length=timedelta(minutes=5))
    with sitecore_backend() as sitecore, state_store() as store:
        summary = sync_orders_to_stripe(sitecore, StripeHook().get_conn(), store, window)
        if not summary.failed:
            advance_cursor(store, sitecore.orders_stream, window)
    return finished(summary, "sitecore_orders_to_stripe")


def stripe_events_to_sitecore(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows.payments_to_sitecore import (
        STRIPE_EVENT_OVERLAP,
        apply_stripe_events,
    )

    window = window_from_context(context, STRIPE_EVENT_OVERLAP, default_length=timedelta(minutes=5))
    with sitecore_backend() as sitecore, state_store() as store:
        summary = apply_stripe_events(StripeHook().get_conn(), sitecore, store, window)
        if not summary.failed:
            advance_cursor(store, "stripe.events", window)
    return finished(summary, "stripe_events_to_sitecore")


def paid_orders_to_erp(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows.erp import drain_erp_outbox
    from stripe_sitecore.hooks.erp import ErpHook

    with sitecore_backend() as sitecore, state_store() as store:
        summary = drain_erp_outbox(sitecore, StripeHook().get_conn(), ErpHook().get_conn(), store)
    return finished(summary, "paid_orders_to_erp")


def realtime_drain(context: dict[str, Any]) -> dict[str, Any]:
    """The real-time path's one task: every unprocessed inbox delivery, then the ERP outbox.

    Records that hit a retryable error do not fail the task (the trigger fires again for them
    with backoff, and the 5-minute DAGs retry and alert): a fast-path run stays fast."""
    from stripe_sitecore.hooks.erp import ErpHook
    from stripe_sitecore.realtime.drain import drain_inbox

    with sitecore_backend() as sitecore, state_store() as store:
        report = drain_inbox(sitecore, StripeHook().get_conn(), ErpHook().get_conn(), store)
    return report.as_dict()


def customer_sync(context: dict[str, Any]) -> dict[str, int]:
    from stripe_sitecore.flows import customers

    window = window_from_context(
        context, customers.STRIPE_EVENT_OVERLAP, default_length=timedelta(minutes=15)
    )
    full_scan = bool((context.get("params") or {}).get("full_scan"))
    # A missing buyer_id is a configuration error too.
    with sitecore_backend() as sitecore, state_store(customers.CustomerSyncConfigError) as store:
        summary = customers.sync_customers(
            sitecore, StripeHook().get_conn(), store, window, full_scan=full_scan
        )
    return finished(summary, "customer_sync")


def health_checks() -> dict:
    """Dead letters piling up, streams gone stale (every order DAG runs it beside its sync)."""
    from stripe_sitecore.alerting.checks import order_streams, run_health_checks
    from stripe_sitecore.backends import configured_backend_id

    # Only the backend's id: the checks read the state DB and need no Sitecore connection.
    try:
        backend = configured_backend_id()
    except UnknownBackend as exc:
        raise AirflowFailException(str(exc)) from exc
    with state_store() as store:
        return run_health_checks(store, order_streams(backend))


# --- reports ------------------------------------------------------------------------------

S = TypeVar("S")
# Run-level keys of params/conf that are not settings.
RUN_KEYS = frozenset({"day"})


def _report_settings(model: type[S], variable: str, context: dict[str, Any]):
    from airflow.sdk import Variable

    from stripe_sitecore.reports.period import period_from_context
    from stripe_sitecore.reports.settings import SettingsError, build_settings, parse_variable

    params = dict(context.get("params") or {})
    conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
    try:
        settings = build_settings(
            model, parse_variable(Variable.get(variable, default=None)), params, conf,
            ignore=RUN_KEYS,
        )  # fmt: skip
        period = period_from_context(
            context, settings.timezone, requested=conf.get("day") or params.get("day")
        )
    except (SettingsError, ValueError) as exc:
        # Wrong settings stay wrong on retry: fail now, saying what to fix.
        raise AirflowFailException(str(exc)) from exc
    return settings, period


def _day(period: ReportPeriod, **counts: Any) -> dict[str, Any]:
    return {"day": period.day.isoformat(), **counts}


def reconciliation_settings(
    context: dict[str, Any],
) -> tuple[ReconciliationSettings, ReportPeriod]:
    from stripe_sitecore.reports.settings import RECONCILIATION_VARIABLE, ReconciliationSettings

    return _report_settings(ReconciliationSettings, RECONCILIATION_VARIABLE, context)


def reconciliation_stage_stripe(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import reconciliation

    _, period = reconciliation_settings(context)
    with state_store() as store:
        return _day(period, **reconciliation.stage_stripe(StripeHook().get_conn(), store, period))


def reconciliation_stage_sitecore(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import reconciliation

    settings, period = reconciliation_settings(context)
    with sitecore_backend() as sitecore, state_store() as store:
        return _day(period, **reconciliation.stage_sitecore(sitecore, store, period, settings))


def reconciliation_resolve(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import reconciliation

    settings, period = reconciliation_settings(context)
    with sitecore_backend() as sitecore, state_store() as store:
        counts = reconciliation.resolve_references(
            StripeHook().get_conn(), sitecore, store, period, settings
        )
    return _day(period, **counts)


def reconciliation_classify(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.backends import configured_backend_id
    from stripe_sitecore.flows import reconciliation

    settings, period = reconciliation_settings(context)
    with state_store() as store:
        return reconciliation.classify(store, period, settings, backend=configured_backend_id())


def reconciliation_publish(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import reconciliation

    settings, period = reconciliation_settings(context)
    with state_store() as store:
        return reconciliation.publish(store, period, settings)


def reconciliation_heal(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import reconciliation

    settings, period = reconciliation_settings(context)
    if not settings.self_heal:
        return _day(period, enabled=False)
    with sitecore_backend() as sitecore, state_store() as store:
        summary = reconciliation.heal(StripeHook().get_conn(), sitecore, store, period, settings)
    summary.raise_if_failed("reconciliation self-healing")
    return _day(period, enabled=True, **summary.as_dict())


def fraud_settings(context: dict[str, Any]) -> tuple[FraudSettings, ReportPeriod]:
    from stripe_sitecore.reports.settings import FRAUD_VARIABLE, FraudSettings

    return _report_settings(FraudSettings, FRAUD_VARIABLE, context)


def _fraud_rules(settings: FraudSettings):
    from stripe_sitecore.flows import fraud

    try:
        return fraud.load_rules(settings)
    except MappingError as exc:
        # A broken rules file stays broken on retry: fail now, with the file and line.
        raise AirflowFailException(str(exc)) from exc


def fraud_load_facts(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import fraud

    settings, period = fraud_settings(context)
    rules = _fraud_rules(settings)
    with state_store() as store:
        counts = fraud.load_facts(StripeHook().get_conn(), store, period, settings, rules=rules)
    return _day(period, **counts)


def fraud_flag(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import fraud

    settings, period = fraud_settings(context)
    rules = _fraud_rules(settings)
    with sitecore_backend() as sitecore, state_store() as store:
        return fraud.flag(StripeHook().get_conn(), sitecore, store, period, settings, rules=rules)


def fraud_publish(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import fraud

    settings, period = fraud_settings(context)
    with state_store() as store:
        return fraud.publish(store, period, settings)


def fraud_write_reviews(context: dict[str, Any]) -> dict[str, Any]:
    from stripe_sitecore.flows import fraud

    settings, period = fraud_settings(context)
    if not settings.write_fraud_review:
        return _day(period, enabled=False)
    with sitecore_backend() as sitecore, state_store() as store:
        summary = fraud.write_reviews(sitecore, store, period, settings)
    summary.raise_if_failed("fraud review")
    return _day(period, enabled=True, **summary.as_dict())


# --- dead letters -------------------------------------------------------------------------


class ReplayIncomplete(RuntimeError):
    """Some dead letters hit errors a retry may cure; the others were replayed."""


def dead_letters_select(params: Mapping[str, Any]) -> dict[str, Any]:
    """The open dead letters the params pick, for the log and the next task."""
    from stripe_sitecore.dead_letters.replay import Selection

    try:
        selection = Selection.from_params(params)
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from exc
    with state_store() as store:
        letters = selection.select(store)
    by_rule = Counter(letter.rule for letter in letters)
    log.info("%d open dead letter(s) of %s selected%s", len(letters), selection.source,
             "".join(f"\n  {rule}: {n}" for rule, n in sorted(by_rule.items())))  # fmt: skip
    return {
        "source": selection.source,
        "ids": [letter.id for letter in letters],
        "by_rule": dict(by_rule),
        "truncated": len(letters) == selection.limit,
    }


def dead_letters_replay(selected: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Replay the selected dead letters that are still open; fails at the end if some should be
    retried, after recording every outcome."""
    from stripe_sitecore.dead_letters.replay import ReplayContext, replay_dead_letters

    if dry_run:
        log.info("dry run: %d dead letter(s) would be replayed", len(selected["ids"]))
        return {"dry_run": True, "selected": len(selected["ids"])}
    with sitecore_backend() as sitecore, state_store() as store:
        with store.begin() as tx:
            letters = tx.list_dead_letters(
                source=selected["source"], status="open", ids=selected["ids"]
            )
        report = replay_dead_letters(
            letters, selected["source"], ReplayContext(store, sitecore=sitecore)
        )
    summary = report.as_dict()
    log.info("replay: %s", {k: v for k, v in summary.items() if k != "outcomes"})
    if report.retryable:
        raise ReplayIncomplete(
            f"{report.retryable} dead letter(s) hit retryable errors; the task retry replays "
            f"them: {summary['outcomes']}"
        )
    return summary
