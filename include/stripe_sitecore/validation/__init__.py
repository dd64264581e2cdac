"""Validation of outbound payloads with Great Expectations, and the quarantine step.

Light to import: Great Expectations and pandas load on the first ``validate_batch`` call.
"""

from stripe_sitecore.validation.report import (
    Failure,
    ValidationReport,
    jsonable,
    quarantine_failures,
)
from stripe_sitecore.validation.runner import default_data_docs_dir, validate_batch
from stripe_sitecore.validation.suites import SUITES

__all__ = [
    "SUITES",
    "Failure",
    "ValidationReport",
    "default_data_docs_dir",
    "jsonable",
    "quarantine_failures",
    "validate_batch",
]
