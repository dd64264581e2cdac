"""The glue between the report DAGs' tasks and the flows: the run's day and settings,
connections to clients, errors a retry cannot cure to ``AirflowFailException``.

Imported inside tasks only (it pulls in the Stripe SDK and SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from stripe_sitecore.flows import fraud, reconciliation
from stripe_sitecore.hooks.ordercloud import OrderCloudHook
from stripe_sitecore.hooks.state import StateStoreHook
from stripe_sitecore.hooks.stripe import StripeHook
from stripe_sitecore.mapping import MappingError
from stripe_sitecore.reports.period import ReportPeriod, period_from_context
from stripe_sitecore.reports.settings import (
    FRAUD_VARIABLE,
    RECONCILIATION_VARIABLE,
    FraudSettings,
    ReconciliationSettings,
    SettingsError,
    build_settings,
    parse_variable,
)
from stripe_sitecore.store.state import StateStore

S = TypeVar("S", ReconciliationSettings, FraudSettings)
# Run-level keys of params/conf that are not settings.
RUN_KEYS = frozenset({"day"})


def _settings(model: type[S], variable: str, context: dict[str, Any]) -> tuple[S, ReportPeriod]:
    from airflow.sdk import Variable

    params = dict(context.get("params") or {})
    conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
    try:
        settings = build_settings(
            model,
            parse_variable(Variable.get(variable, default=None)),
            params,
            conf,
            ignore=RUN_KEYS,
        )
        period = period_from_context(
            context, settings.timezone, requested=conf.get("day") or params.get("day")
        )
    except (SettingsError, ValueError) as exc:
        # Wrong settings stay wrong on retry: fail now, saying what to fix.
        raise AirflowFailException(str(exc)) from exc
    return settings, period


@contextmanager
def _store() -> Iterator[StateStore]:
    store = StateStoreHook().get_conn()
    try:
        yield store
    finally:
        store.dispose()


T = TypeVar("T")


def _no_retry_on_bad_files(work: Callable[[], T]) -> T:
    try:
        return work()
    except MappingError as exc:
        # A broken rules file stays broken on retry: fail now, with the file and line.
        raise AirflowFailException(str(exc)) from exc


# --- reconciliation_daily ----------------------------------------------------------------------


def reconciliation_settings(context: dict[str, Any]):
    return _settings(ReconciliationSettings, RECONCILIATION_VARIABLE, context)


def reconciliation_stage_stripe(context: dict[str, Any]) -> dict[str, Any]:
    _, period = reconciliation_settings(context)
    with _store() as store:
        counts = reconciliation.stage_stripe(StripeHook().get_conn(), store, period)
    return {"day": period.day.isoformat(), **counts}


def reconciliation_stage_sitecore(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = reconciliation_settings(context)
    with _store() as store:
        counts = reconciliation.stage_sitecore(OrderCloudHook().get_conn(), store, period, settings)
    return {"day": period.day.isoformat(), **counts}


def reconciliation_resolve(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = reconciliation_settings(context)
    with _store() as store:
        counts = reconciliation.resolve_references(
            StripeHook().get_conn(), OrderCloudHook().get_conn(), store, period, settings
        )
    return {"day": period.day.isoformat(), **counts}


def reconciliation_classify(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = reconciliation_settings(context)
    with _store() as store:
        return reconciliation.classify(store, period, settings)


def reconciliation_publish(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = reconciliation_settings(context)
    with _store() as store:
        return reconciliation.publish(store, period, settings)


def reconciliation_heal(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = reconciliation_settings(context)
    if not settings.self_heal:
        return {"day": period.day.isoformat(), "enabled": False}
    with _store() as store:
        summary = reconciliation.heal(
            StripeHook().get_conn(), OrderCloudHook().get_conn(), store, period, settings
        )
    summary.raise_if_failed("reconciliation self-healing")
    return {"day": period.day.isoformat(), "enabled": True, **summary.as_dict()}


# --- fraud_report_daily ------------------------------------------------------------------------


def fraud_settings(context: dict[str, Any]):
    return _settings(FraudSettings, FRAUD_VARIABLE, context)


def fraud_load_facts(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = fraud_settings(context)
    rules = _no_retry_on_bad_files(lambda: fraud.load_rules(settings))
    with _store() as store:
        counts = fraud.load_facts(StripeHook().get_conn(), store, period, settings, rules=rules)
    return {"day": period.day.isoformat(), **counts}


def fraud_flag(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = fraud_settings(context)
    rules = _no_retry_on_bad_files(lambda: fraud.load_rules(settings))
    with _store() as store:
        return fraud.flag(
            StripeHook().get_conn(),
            OrderCloudHook().get_conn(),
            store,
            period,
            settings,
            rules=rules,
        )


def fraud_publish(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = fraud_settings(context)
    with _store() as store:
        return fraud.publish(store, period, settings)


def fraud_write_reviews(context: dict[str, Any]) -> dict[str, Any]:
    settings, period = fraud_settings(context)
    if not settings.write_fraud_review:
        return {"day": period.day.isoformat(), "enabled": False}
    with _store() as store:
        summary = fraud.write_reviews(OrderCloudHook().get_conn(), store, period, settings)
    summary.raise_if_failed("xp.FraudReview")
    return {"day": period.day.isoformat(), "enabled": True, **summary.as_dict()}
