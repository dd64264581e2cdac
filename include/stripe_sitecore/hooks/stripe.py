"""Airflow hook for Stripe, reading the ``stripe_default`` connection of DESIGN.md.

Building a client through the hook also makes the Stripe SDK's own logging safe
(``protect_stripe_logging``): at DEBUG the SDK logs every response body, and a PaymentIntent's
body holds its ``client_secret``, which lets anyone with a publishable key confirm the payment.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from typing import Any

from airflow.sdk import BaseHook

from stripe_sitecore.clients.stripe_gateway import PINNED_API_VERSION, StripeGateway, StripeSettings
from stripe_sitecore.hooks.connection import base_url, extra_number, mask_secrets

STRIPE_LOGGER = "stripe"
REDACTED = "[redacted]"

# Client secrets are "<object id>_secret_<random>" (PaymentIntents "pi_…", SetupIntents "seti_…",
# Checkout Sessions "cs_…"); the keys a body names them by; and API keys, which the SDK sends in a
# header it does not log, should a caller ever put one in a message.
_SECRET_VALUES = re.compile(
    r"\b[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*_secret_[A-Za-z0-9]+"
    r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9_]+"
    r"|\bwhsec_[A-Za-z0-9_]+"
)
_SECRET_FIELDS = re.compile(
    r"""((?:["']|\b)(?:client_secret|secret)(?:["'])?\s*[:=]\s*["']?)[^"'&\s,}\]]+"""
)


def redact_stripe_secrets(text: str) -> str:
    """``text`` with client secrets, endpoint secrets and API keys replaced by ``[redacted]``,
    whether they appear as JSON (a response body) or form-encoded (a request's post data)."""
    if "secret" not in text and "sk_" not in text and "rk_" not in text:
        return text
    text = _SECRET_FIELDS.sub(lambda m: m.group(1) + REDACTED, text)
    return _SECRET_VALUES.sub(REDACTED, text)


class _RedactStripeSecrets(logging.Filter):
    """On the SDK's logger itself, so it holds for every handler, whatever level the root
    logger or the ``stripe`` logger is set to (a handler-level filter could be bypassed by a
    handler someone adds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_stripe_secrets(message)
        if redacted is not message:
            record.msg, record.args = redacted, None
        return True


_protect_lock = threading.Lock()


def protect_stripe_logging() -> None:
    """Make the Stripe SDK's logging unable to show a secret; idempotent.

    1. A filter on the ``stripe`` logger redacts client secrets (and API keys) from every
       record, so the DEBUG "API response body" and "Post details" lines keep their use without
       the secrets.
    2. ``STRIPE_LOG=debug`` / ``stripe.log = "debug"`` make the SDK also *print* each line to
       stderr, past logging and so past any filter. That printing is turned off; the level asked
       for is applied to the ``stripe`` logger instead (when it has none of its own), so the same
       lines still appear, redacted, through logging.
    """
    import stripe
    from stripe import _util

    with _protect_lock:
        logger = logging.getLogger(STRIPE_LOGGER)
        if not any(isinstance(f, _RedactStripeSecrets) for f in logger.filters):
            logger.addFilter(_RedactStripeSecrets())
        console = getattr(_util, "_console_log_level", None)
        if console is None or getattr(console, "_stripe_sitecore_quiet", False):
            return
        requested = console()
        if requested and logger.level == logging.NOTSET:
            logger.setLevel(logging.DEBUG if requested == "debug" else logging.INFO)

        def quiet() -> None:
            # Also when stripe.log or STRIPE_LOG is set later: the check runs on every line.
            wanted = stripe.log if stripe.log in ("debug", "info") else None
            if wanted and logger.level == logging.NOTSET:
                logger.setLevel(logging.DEBUG if wanted == "debug" else logging.INFO)
            return None

        quiet._stripe_sitecore_quiet = True  # type: ignore[attr-defined]
        # The SDK looks this up on every log call (stripe._util.log_debug/log_info).
        _util._console_log_level = quiet


class StripeHook(BaseHook):
    """``password`` = secret key; ``host`` = API base URL (empty for Stripe itself).

    Extra: ``api_version``, ``max_network_retries``, ``connect_timeout``, ``read_timeout``,
    ``requests_per_second`` (default 80% of Stripe's limit for the key: 20 test, 80 live),
    ``search_requests_per_second`` (default 16), ``rate_limit_attempts``, ``webhook_secret``.
    """

    conn_name_attr = "stripe_conn_id"
    default_conn_name = "stripe_default"
    conn_type = "generic"
    hook_name = "Stripe"

    def __init__(self, stripe_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.stripe_conn_id = stripe_conn_id
        self._gateway: StripeGateway | None = None
        self._webhook_secret: str | None = None

    def settings(self) -> StripeSettings:
        protect_stripe_logging()
        conn = self.get_connection(self.stripe_conn_id)
        extra = conn.extra_dejson
        self._webhook_secret = extra.get("webhook_secret") or None
        mask_secrets(conn.password, self._webhook_secret)
        try:
            return StripeSettings(
                api_key=conn.password or "",
                api_base=base_url(conn) or None,
                api_version=extra.get("api_version", PINNED_API_VERSION),
                max_network_retries=extra_number(extra, "max_network_retries", 2, int),
                connect_timeout=extra_number(extra, "connect_timeout", 10.0),
                read_timeout=extra_number(extra, "read_timeout", 30.0),
                rate_limit_attempts=extra_number(extra, "rate_limit_attempts", 5, int),
                requests_per_second=extra_number(extra, "requests_per_second", None),
                search_requests_per_second=extra_number(extra, "search_requests_per_second", None),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"connection {self.stripe_conn_id!r}: {exc}") from None

    def get_conn(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = StripeGateway(self.settings())
        return self._gateway

    def webhook_secret(self) -> str | None:
        """The endpoint secret (``whsec_...``) that signs Stripe's webhooks, masked in logs."""
        if self._webhook_secret is None:
            self.settings()
        return self._webhook_secret

    def test_connection(self) -> tuple[bool, str]:
        import stripe

        try:
            # The UI's Test button should answer within seconds, not after a full retry cycle.
            settings = self.settings()
            gateway = StripeGateway(
                dataclasses.replace(
                    settings,
                    max_network_retries=min(settings.max_network_retries, 1),
                    rate_limit_attempts=min(settings.rate_limit_attempts, 2),
                )
            )
            gateway.check_credentials()
        except stripe.AuthenticationError:
            return False, "Stripe refused the API key (check the connection password)"
        except stripe.PermissionError:
            return False, "Stripe API key lacks a permission (a restricted key needs read access)"
        except stripe.APIConnectionError:
            return (
                False,
                f"Stripe API unreachable at {settings.api_base or 'api.stripe.com'}",
            )
        except (stripe.StripeError, ValueError) as exc:
            return False, f"Stripe check failed: {type(exc).__name__}: {exc}"
        return True, "Connected to Stripe"
