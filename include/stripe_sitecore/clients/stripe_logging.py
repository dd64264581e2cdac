"""The Stripe SDK's own logging, made unable to show a secret (``protect_stripe_logging``).

At DEBUG the SDK logs every response body, and a PaymentIntent's body holds its
``client_secret``, which lets anyone with a publishable key confirm the payment. Every
``StripeGateway`` calls ``protect_stripe_logging`` when it is made, hook or not.
"""

from __future__ import annotations

import logging
import re
import threading

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
