"""Stripe's metadata limits: at most 50 keys, keys up to 40 characters without ``[`` or ``]``,
values strings of up to 500 characters. Used by the metadata transform, by the check a mapping
runs on its finished metadata, and by the Great Expectations suites."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from stripe_sitecore.mapping.errors import TransformError

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500


def key_problem(key: Any) -> tuple[str, str] | None:
    """(rule, reason) if Stripe would refuse ``key`` as a metadata key."""
    if not isinstance(key, str) or not key:
        return "metadata.key_invalid", f"metadata key {key!r} is not a non-empty string"
    if "[" in key or "]" in key:
        return "metadata.key_invalid", f"metadata key {key!r} contains '[' or ']'"
    if len(key) > MAX_KEY_LENGTH:
        return (
            "metadata.key_too_long",
            f"metadata key {key!r} is {len(key)} characters (Stripe allows {MAX_KEY_LENGTH})",
        )
    return None


def violations(metadata: Any) -> list[tuple[str, str]]:
    """Every way ``metadata`` breaks Stripe's limits, as (rule, reason); empty if it is fine."""
    if not isinstance(metadata, dict):
        return [("metadata.not_an_object", f"metadata is {type(metadata).__name__}, not an object")]
    found: list[tuple[str, str]] = []
    if len(metadata) > MAX_KEYS:
        found.append(
            (
                "metadata.too_many_keys",
                f"metadata has {len(metadata)} keys (Stripe allows {MAX_KEYS})",
            )
        )
    for key, value in metadata.items():
        problem = key_problem(key)
        if problem:
            found.append(problem)
        if not isinstance(value, str):
            found.append(
                (
                    "metadata.not_a_string",
                    f"metadata {key!r} is {type(value).__name__}; Stripe takes strings only",
                )
            )
        elif len(value) > MAX_VALUE_LENGTH:
            found.append(
                (
                    "metadata.value_too_long",
                    f"metadata {key!r} is {len(value)} characters "
                    f"(Stripe allows {MAX_VALUE_LENGTH})",
                )
            )
    return found


def metadata_value(
    value: Any, *, truncate: bool = False, max_length: int = MAX_VALUE_LENGTH
) -> str:
    """``value`` as a metadata string: scalars are written out exactly, anything else refused.

    A string longer than ``max_length`` is an error unless the mapping asked to ``truncate``.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | Decimal):
        text = str(value)
    else:
        raise TransformError(
            "metadata.not_a_string",
            f"{type(value).__name__} {value!r} cannot be a metadata value (strings, numbers "
            "and booleans only)",
        )
    if len(text) > max_length:
        if not truncate:
            raise TransformError(
                "metadata.value_too_long",
                f"value of {len(text)} characters is longer than {max_length} "
                "(set truncate: true on the field to cut it)",
            )
        text = text[:max_length]
    return text
