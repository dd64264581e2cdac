"""Running a suite with Great Expectations Core, in the task, and reading results per row.

Great Expectations and pandas are imported here inside functions only: importing GX costs
seconds, and DAG files must parse fast. One GX context per process and data-docs folder is built
on first use and reused; validation results are kept on disk (``.gx_results`` inside the data
docs folder) so the docs index lists runs of every task, not only the last one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stripe_sitecore.validation.report import Failure, ValidationReport
from stripe_sitecore.validation.suites import SUITES, Check, Suite

log = logging.getLogger(__name__)

DATA_DOCS_ENV = "STRIPE_SITECORE_DATA_DOCS_DIR"
# Validation results kept per payload type; older ones (and their doc pages) are pruned. The
# docs index is rebuilt from all kept results on every run, so this bounds its cost (~1 s at 50).
RESULTS_KEPT = 20


def default_data_docs_dir() -> Path:
    configured = os.environ.get(DATA_DOCS_ENV)
    if configured:
        return Path(configured)
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return airflow_home / "stripe_sitecore" / "data_docs"


def validate_batch(
    payload_type: str,
    rows: list[tuple[str, dict[str, Any]]],
    *,
    build_data_docs: bool = True,
    data_docs_dir: str | os.PathLike[str] | None = None,
) -> ValidationReport:
    """Validate ``(record key, payload)`` rows with the payload type's suite.

    Returns which keys passed and, for each failed key, every expectation it failed with a
    readable reason. Record keys must be unique. Data Docs go to ``data_docs_dir`` (default
    ``$STRIPE_SITECORE_DATA_DOCS_DIR`` or ``$AIRFLOW_HOME/stripe_sitecore/data_docs``).
    """
    suite = SUITES.get(payload_type)
    if suite is None:
        raise ValueError(f"no suite for payload type {payload_type!r} (known: {sorted(SUITES)})")
    keys = [key for key, _ in rows]
    duplicates = sorted(k for k, n in Counter(keys).items() if n > 1)
    if duplicates:
        raise ValueError(f"record keys must be unique in a batch: {duplicates[:5]}")
    if not rows:
        return ValidationReport(payload_type, [], {})
    started = time.perf_counter()
    table = [suite.row(payload) for _, payload in rows]
    docs_dir = Path(data_docs_dir or default_data_docs_dir()) if build_data_docs else None
    results = _runtime(docs_dir).run(suite, table)
    failed: dict[str, list[Failure]] = {}
    by_rule: Counter[str] = Counter()
    for check, indices in results:
        for index in indices:
            failure = Failure(check.label, _reason(check, table[index]), suite.rule(check))
            failed.setdefault(keys[index], []).append(failure)
            by_rule[failure.rule] += 1
    report = ValidationReport(
        payload_type=payload_type,
        passed=[key for key in keys if key not in failed],
        failed=failed,
        seconds=time.perf_counter() - started,
        data_docs=str(docs_dir / "index.html") if docs_dir else None,
        failures_by_rule=by_rule,
    )
    log.info("%s", report.summary())
    return report


def _reason(check: Check, row: dict[str, Any]) -> str:
    columns = check.columns
    if len(columns) == 2:
        return check.reason.format(a=row[columns[0]], b=row[columns[1]])
    return check.reason.format(value=row[columns[0]])


_runtimes: dict[Path | None, _Runtime] = {}
_runtimes_lock = threading.Lock()


def _runtime(docs_dir: Path | None) -> _Runtime:
    with _runtimes_lock:
        runtime = _runtimes.get(docs_dir)
        if runtime is None:
            runtime = _runtimes[docs_dir] = _Runtime(docs_dir)
        return runtime


class _Runtime:
    """A GX context with every suite registered; a checkpoint per suite when building docs."""

    def __init__(self, docs_dir: Path | None):
        # GX logs hundreds of INFO lines while importing; task logs must stay readable.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.docs_dir = docs_dir
        self.lock = threading.Lock()
        stores = InMemoryStoreBackendDefaults()
        sites: dict[str, Any] = {}
        if docs_dir is not None:
            stores.stores[stores.validation_results_store_name]["store_backend"] = {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir / ".gx_results"),
            }
            sites["stripe_sitecore"] = {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        config = DataContextConfig(
            store_backend_defaults=stores,
            data_docs_sites=sites,
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        )
        self.context = gx.get_context(project_config=config, mode="ephemeral")
        source = self.context.data_sources.add_pandas("stripe_sitecore")
        self.batches: dict[str, Any] = {}
        self.suites: dict[str, Any] = {}
        self.checkpoints: dict[str, Any] = {}
        for name, suite in SUITES.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("batch")
            gx_suite = self.context.suites.add(gx.ExpectationSuite(name=name))
            for check in suite.checks:
                gx_suite.add_expectation(_expectation(check))
            self.batches[name] = batch
            self.suites[name] = gx_suite
            if docs_dir is not None:
                definition = self.context.validation_definitions.add(
                    gx.ValidationDefinition(name=name, data=batch, suite=gx_suite)
                )
                self.checkpoints[name] = self.context.checkpoints.add(
                    gx.Checkpoint(
                        name=name,
                        validation_definitions=[definition],
                        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                        result_format="COMPLETE",
                    )
                )

    def run(self, suite: Suite, table: list[dict[str, Any]]) -> list[tuple[Check, list[int]]]:
        """Each failed check with the row positions that failed it."""
        import great_expectations as gx
        import pandas as pd

        frame = pd.DataFrame(table, columns=list(suite.columns), dtype=object)
        name = suite.payload_type
        with self.lock:
            if name in self.checkpoints:
                self._prune(name)
                run_id = gx.RunIdentifier(run_name=name, run_time=datetime.now(UTC))
                outcome = self.checkpoints[name].run(
                    batch_parameters={"dataframe": frame}, run_id=run_id
                )
                (result,) = outcome.run_results.values()
            else:
                batch = self.batches[name].get_batch(batch_parameters={"dataframe": frame})
                result = batch.validate(self.suites[name], result_format="COMPLETE")
        checks = {check.name: check for check in suite.checks}
        failed = []
        for outcome_of in result.results:
            check = checks[outcome_of.expectation_config.meta["check"]]
            if _raised(outcome_of.exception_info):
                raise RuntimeError(
                    f"expectation {check.label} of {name} could not run: "
                    f"{_exception_message(outcome_of.exception_info)}"
                )
            if not outcome_of.success:
                indices = outcome_of.result.get("unexpected_index_list") or []
                if not indices:
                    raise RuntimeError(f"expectation {check.label} failed without failing rows")
                failed.append((check, [int(i) for i in indices]))
        return failed

    def _prune(self, name: str) -> None:
        store = self.context.validation_results_store
        keys = [key for key in store.list_keys() if key.expectation_suite_identifier.name == name]
        keys.sort(key=lambda key: key.run_id.run_time, reverse=True)
        for key in keys[RESULTS_KEPT - 1 :]:
            store.remove_key(key)


def _expectation(check: Check) -> Any:
    import great_expectations.expectations as gxe

    return getattr(gxe, check.expectation)(**check.kwargs, meta={"check": check.name})


def _raised(info: Any) -> bool:
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(_raised(nested) for nested in info.values())


def _exception_message(info: dict[str, Any]) -> str:
    if info.get("exception_message"):
        return str(info["exception_message"])
    for nested in info.values():
        if isinstance(nested, dict):
            message = _exception_message(nested)
            if message:
                return message
    return "unknown error"
