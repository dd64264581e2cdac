"""The webhook receiver as a FastAPI app: ``POST /stripe`` and ``POST /ordercloud``.

Each delivery is size-capped (413 before parsing), signature-checked (400, nothing stored: the
body is untrusted), shape-checked, refused when stale (400: a Stripe signature older than
``tolerance``, an OrderCloud ``Date`` further than ``ordercloud_max_age_seconds`` from now, which
stops replays of a captured delivery), scrubbed of secrets and written to the state DB's
``webhook_inbox`` once per event id (2xx, ``duplicate`` says whether it was there already).

A correctly signed body with the wrong shape is dead-lettered and answered **200**: the sender
proved it holds the secret, so the body is what the sender meant, and sending it again will not
make it better. A 4xx would have Stripe retry it for three days (and warn about, then disable, the
endpoint) for nothing; the dead letter keeps the rule and a readable reason for a person to look
at, and the poll still reads the event from Stripe's API (webhooks are only hints).

Answers are JSON: ``{"received": true, "duplicate": bool}`` on success, ``{"error": code,
"reason": text}`` otherwise. 503 means "try again later": the secret is not configured, the
secrets or the state DB cannot be read (on every path: lookup, insert, dead letter), or the
receiver failed unexpectedly. Nothing answers 500, so a sender always retries what was not
stored: the fuzz tests send plenty.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from stripe_sitecore.webhooks.events import (
    SOURCE_ORDERCLOUD,
    SOURCE_STRIPE,
    InboxRecord,
    InvalidWebhook,
    parse_json_object,
    parse_ordercloud_payload,
    parse_stripe_event,
    scrub,
)

if TYPE_CHECKING:
    from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

# Stripe's event bodies are a few KB, large ones (many line items, long metadata) tens of KB.
MAX_BODY_BYTES = 512 * 1024
# Stripe's own default: a signature older than this is refused, which stops replays.
SIGNATURE_TOLERANCE_SECONDS = 300
# OrderCloud signs the body only (X-oc-hash), not a time: its payload's ``Date`` is the signed
# time, held to the same window by default (extra ``webhook_max_age_seconds`` of
# ``ordercloud_default``). It is compared both ways: a Date ahead of our clock by more than the
# window is as unusable for this check as an old one.
ORDERCLOUD_MAX_AGE_SECONDS = 300

DEAD_LETTER_SOURCES = {
    SOURCE_STRIPE: "stripe.webhooks",
    SOURCE_ORDERCLOUD: "ordercloud.webhooks",
}


@dataclass(frozen=True)
class WebhookSecrets:
    """The secrets that sign the deliveries (``None`` when not configured: answered with 503) and
    how old an OrderCloud delivery may be; read together from the connections."""

    stripe_webhook_secret: str | None = None
    ordercloud_hash_key: str | None = None
    ordercloud_max_age_seconds: float = ORDERCLOUD_MAX_AGE_SECONDS

    def __repr__(self) -> str:  # never show the values, not even in a traceback
        return (
            f"WebhookSecrets(stripe_webhook_secret={'set' if self.stripe_webhook_secret else None},"
            f" ordercloud_hash_key={'set' if self.ordercloud_hash_key else None},"
            f" ordercloud_max_age_seconds={self.ordercloud_max_age_seconds})"
        )


class WebhookSettingsError(ValueError):
    """A webhook setting in a connection that cannot be used; the message says which and why."""


SecretsProvider = Callable[[], WebhookSecrets]
StoreProvider = Callable[[], "StateStore"]


class Answer(Exception):
    """Stop handling a delivery and answer with this status and JSON body."""

    def __init__(self, status: int, error: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.body = {"error": error, "reason": reason}


class Receiver:
    """What the endpoints do, without HTTP: verify, check, store. Blocking (runs in a thread)."""

    def __init__(
        self,
        secrets_provider: SecretsProvider,
        store_provider: StoreProvider,
        *,
        tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.secrets_provider = secrets_provider
        self.store_provider = store_provider
        self.tolerance = tolerance
        self.clock = clock

    # --- Stripe ----------------------------------------------------------------------------
    def stripe(self, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        try:
            secret = self._secrets().stripe_webhook_secret
            if not secret:
                raise Answer(
                    503,
                    "not_configured",
                    "no Stripe webhook secret: set extra 'webhook_secret' on connection "
                    "'stripe_default'",
                )
            text = self._verify_stripe(body, signature, secret)
            return self._store(SOURCE_STRIPE, text, body, parse_stripe_event, "stripe_webhook")
        except Answer as answer:
            self._log_refusal(SOURCE_STRIPE, answer, len(body))
            return answer.status, answer.body
        except Exception as exc:
            return _unexpected(SOURCE_STRIPE, exc)

    def _verify_stripe(self, body: bytes, signature: str | None, secret: str) -> str:
        if not signature:
            raise Answer(400, "missing_signature", "missing Stripe-Signature header")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            # Stripe signs UTF-8 JSON; the SDK cannot check anything else.
            raise Answer(400, "bad_encoding", "body is not UTF-8 text") from None
        import stripe

        try:
            stripe.WebhookSignature.verify_header(text, signature, secret, self.tolerance)
        except stripe.SignatureVerificationError as exc:
            message = getattr(exc, "user_message", None) or str(exc)
            if message.startswith("Timestamp outside the tolerance zone"):
                raise Answer(
                    400,
                    "stale_signature",
                    f"Stripe-Signature timestamp is more than {self.tolerance}s old",
                ) from None
            raise Answer(
                400, "bad_signature", f"Stripe-Signature check failed: {message}"
            ) from None
        except (TypeError, ValueError, OverflowError):
            # e.g. a header whose signature is not ASCII, which the comparison refuses.
            raise Answer(
                400, "bad_signature", "Stripe-Signature check failed: malformed header"
            ) from None
        return text

    # --- OrderCloud ------------------------------------------------------------------------
    def ordercloud(self, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        try:
            secrets = self._secrets()
            key = secrets.ordercloud_hash_key
            if not key:
                raise Answer(
                    503,
                    "not_configured",
                    "no OrderCloud hash key: set extra 'webhook_hash_key' on connection "
                    "'ordercloud_default'",
                )
            if not signature:
                raise Answer(400, "missing_signature", "missing X-oc-hash header")
            expected = b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest())
            if not hmac.compare_digest(expected, signature.encode("latin-1", "replace")):
                raise Answer(400, "bad_signature", "X-oc-hash does not match the body")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            max_age = secrets.ordercloud_max_age_seconds
            return self._store(
                SOURCE_ORDERCLOUD,
                text,
                body,
                parse_ordercloud_payload,
                "ordercloud_webhook",
                check=lambda record: self._check_ordercloud_age(record, max_age),
            )
        except Answer as answer:
            self._log_refusal(SOURCE_ORDERCLOUD, answer, len(body))
            return answer.status, answer.body
        except Exception as exc:
            return _unexpected(SOURCE_ORDERCLOUD, exc)

    def _check_ordercloud_age(self, record: InboxRecord, max_age: float) -> None:
        """Refuse a signed delivery whose ``Date`` is outside the window, like a stale Stripe
        signature: 400, nothing stored (the body is genuine, but may be a replay)."""
        age = self.clock() - record.event_created.timestamp()
        if age > max_age:
            raise Answer(
                400,
                "stale_delivery",
                f"OrderCloud delivery Date {record.event_created.isoformat()} is more than "
                f"{max_age:g}s old (extra 'webhook_max_age_seconds' of 'ordercloud_default')",
            )
        if -age > max_age:
            raise Answer(
                400,
                "stale_delivery",
                f"OrderCloud delivery Date {record.event_created.isoformat()} is more than "
                f"{max_age:g}s ahead of this server's clock",
            )

    # --- shared ----------------------------------------------------------------------------
    def _secrets(self) -> WebhookSecrets:
        try:
            return self.secrets_provider()
        except WebhookSettingsError as exc:
            raise Answer(503, "not_configured", str(exc)) from None
        except Exception as exc:
            # The connections could not be read at all (their database down): try again later.
            log.warning("webhook secrets unavailable: %s", type(exc).__name__)
            raise Answer(
                503, "secrets_unavailable", f"webhook secrets unavailable: {type(exc).__name__}"
            ) from None

    def _store(
        self,
        source: str,
        text: str | None,
        body: bytes,
        parse: Callable[[dict[str, Any]], InboxRecord],
        rule_prefix: str,
        check: Callable[[InboxRecord], None] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Signed: into the inbox, or, when its shape is wrong, into the dead letters. ``check``
        may refuse a well-shaped record (raises ``Answer``) before anything is stored."""
        parsed: dict[str, Any] | None = None
        try:
            if text is None:
                raise InvalidWebhook(f"{rule_prefix}.json", "body is not UTF-8 text")
            parsed = parse_json_object(text, rule_prefix)
            record = parse(parsed)
        except InvalidWebhook as invalid:
            return self._dead_letter(source, body, parsed, invalid)
        if check is not None:
            check(record)
        store = self._store_provider()
        try:
            with store.begin() as tx:
                added = tx.add_to_inbox(
                    event_id=record.event_id,
                    source=record.source,
                    event_type=record.event_type,
                    event_created=record.event_created,
                    body=record.body,
                    object_id=record.object_id,
                    payment_intent_id=record.payment_intent_id,
                )
        except Exception as exc:
            if _is_data_error(exc):
                invalid = InvalidWebhook(
                    f"{rule_prefix}.storage",
                    f"the state database refused the event: {type(exc).__name__}",
                )
                return self._dead_letter(source, body, parsed, invalid)
            raise _db_unavailable(exc) from None
        log.info(
            "%s webhook %s %s (%s)",
            source,
            record.event_id,
            "stored" if added else "already in the inbox",
            record.event_type,
        )
        return 200, {"received": True, "duplicate": not added}

    def _dead_letter(
        self,
        source: str,
        body: bytes,
        parsed: dict[str, Any] | None,
        invalid: InvalidWebhook,
    ) -> tuple[int, dict[str, Any]]:
        digest = hashlib.sha256(body).hexdigest()
        event_id = (parsed or {}).get("id") or (parsed or {}).get("LogID")
        key_ok = isinstance(event_id, str) and 0 < len(event_id) <= 200 and event_id.isprintable()
        record_key = event_id if key_ok else f"sha256:{digest}"
        # An unparsed body cannot be scrubbed of secrets: keep only what identifies it.
        record = (
            scrub(parsed)
            if parsed is not None
            else {"size": len(body), "sha256": digest, "body": "(not kept: not a JSON object)"}
        )
        store = self._store_provider()
        try:
            with store.begin() as tx:
                tx.quarantine(
                    source=DEAD_LETTER_SOURCES[source],
                    record_key=record_key,
                    record=record,
                    rule=invalid.rule,
                    reason=invalid.reason,
                )
        except Exception as exc:
            if not _is_data_error(exc):
                raise _db_unavailable(exc) from None
            # The database would not take the body even as a dead letter: keep its digest.
            # If it is down by now, 503: the sender retries, and the dead letter is not lost.
            try:
                with self._store_provider().begin() as tx:
                    tx.quarantine(
                        source=DEAD_LETTER_SOURCES[source],
                        record_key=f"sha256:{digest}",
                        record={"size": len(body), "sha256": digest, "body": "(not kept)"},
                        rule=invalid.rule,
                        reason=invalid.reason,
                    )
            except Answer:
                raise
            except Exception as retry_exc:
                raise _db_unavailable(retry_exc) from None
        log.warning("%s webhook dead-lettered (%s): %s", source, invalid.rule, invalid.reason[:200])
        return 200, {
            "received": True,
            "duplicate": False,
            "dead_letter": {"rule": invalid.rule, "reason": invalid.reason},
        }

    def _store_provider(self) -> StateStore:
        try:
            return self.store_provider()
        except Exception as exc:
            raise _db_unavailable(exc) from None

    @staticmethod
    def _log_refusal(source: str, answer: Answer, size: int | None) -> None:
        # The reason never holds the secret or the signature: only what was wrong.
        log.warning(
            "%s webhook refused with %d %s: %s (%s bytes)",
            source,
            answer.status,
            answer.body["error"],
            answer.body["reason"][:200],
            "too many" if size is None else size,
        )


def _is_data_error(exc: Exception) -> bool:
    import sqlalchemy as sa

    return isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError)


def _unexpected(source: str, exc: Exception) -> tuple[int, dict[str, Any]]:
    """A failure nothing above foresaw: 503, so the sender retries and nothing is lost. Logged
    with where it happened but not its message, which may quote the (unscrubbed) body."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    log.error("%s webhook failed unexpectedly: %s at %s", source, type(exc).__name__, where)
    return 503, {"error": "receiver_error", "reason": f"receiver failed: {type(exc).__name__}"}


def _db_unavailable(exc: Exception) -> Answer:
    log.warning("state database unavailable for webhooks: %s", type(exc).__name__)
    return Answer(503, "state_db_unavailable", f"state database unavailable: {type(exc).__name__}")


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is longer than ``limit`` (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    secrets_provider: SecretsProvider,
    store_provider: StoreProvider,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The receiver app. Providers are called per request (cache in them), so secrets and the
    state DB are read where the app runs (Airflow's api-server), not where it is built."""
    receiver = Receiver(secrets_provider, store_provider, tolerance=tolerance, clock=clock)
    app = FastAPI(
        title="Stripe–Sitecore webhooks",
        description="Signed Stripe and OrderCloud webhooks into the integration's inbox.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def receive(request: Request, source: str, header: str, handle) -> JSONResponse:
        started = time.monotonic()
        body = await _read_capped(request, max_body_bytes)
        if body is None:
            answer = Answer(413, "body_too_large", f"body is larger than {max_body_bytes} bytes")
            Receiver._log_refusal(source, answer, None)
            return JSONResponse(answer.body, status_code=413)
        status, content = await run_in_threadpool(handle, body, request.headers.get(header))
        log.debug("%s webhook answered %d in %.3fs", source, status, time.monotonic() - started)
        return JSONResponse(content, status_code=status)

    @app.post("/stripe")
    async def stripe_webhook(request: Request) -> JSONResponse:
        return await receive(request, SOURCE_STRIPE, "stripe-signature", receiver.stripe)

    @app.post("/ordercloud")
    async def ordercloud_webhook(request: Request) -> JSONResponse:
        return await receive(request, SOURCE_ORDERCLOUD, "x-oc-hash", receiver.ordercloud)

    app.state.receiver = receiver
    return app
