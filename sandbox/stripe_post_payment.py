"""What happens to a Stripe payment after it succeeds: refunds, disputes, early fraud warnings
and payouts.

`PostPaymentMixin` is part of `StripeSimulator` (it uses its storage, events and rendering); it
lives here to keep each file about one thing. Disputes, early fraud warnings and payouts are
started by Stripe or the card networks, never by an API client, so the simulator creates them
through test-helper operations (`/_sandbox/stripe/...`); clients read them through the real
endpoints.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox import stripe_params as sp
from sandbox.stripe_params import StripeError, invalid

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_FAILURE_REASONS = (
    "charge_for_pending_refund_disputed", "declined", "expired_or_canceled_card",
    "insufficient_funds", "lost_or_stolen_card", "merchant_request", "unknown",
)  # fmt: skip
DISPUTE_REASONS = (
    "bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
    "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
    "insufficient_funds", "noncompliant", "product_not_received", "product_unacceptable",
    "subscription_canceled", "unrecognized",
)  # fmt: skip
# Visa's reason codes for the dispute reasons the demo uses; other networks' are left null.
VISA_REASON_CODES = {
    "fraudulent": "10.4",
    "duplicate": "12.6.1",
    "credit_not_processed": "13.6",
    "product_not_received": "13.1",
    "product_unacceptable": "13.3",
}
OPEN_DISPUTE_STATUSES = (
    "needs_response", "under_review", "warning_needs_response", "warning_under_review",
)  # fmt: skip
EVIDENCE_DUE_DAYS = 7
# Stripe's dispute fee is 15.00 in most settlement currencies; in minor units by decimals.
DISPUTE_FEE = {0: 2000, 2: 1500, 3: 15000}
FRAUD_TYPES = (
    "card_never_received", "fraudulent_card_application", "made_with_counterfeit_card",
    "made_with_lost_card", "made_with_stolen_card", "misc", "unauthorized_use_of_card",
)  # fmt: skip

REFUND_CREATE = {
    "amount": sp.integer(),
    "charge": sp.string(),
    "payment_intent": sp.string(),
    "reason": sp.enum(*REFUND_REASONS),
    "metadata": sp.METADATA,
    "expand": sp.EXPAND,
}
REFUND_UPDATE = {"metadata": sp.METADATA, "expand": sp.EXPAND}
REFUND_LIST = {
    **sp.LIST_PARAMS,
    "created": sp.RANGE,
    "charge": sp.string(),
    "payment_intent": sp.string(),
}
EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy",
    "cancellation_policy_disclosure", "cancellation_rebuttal", "customer_communication",
    "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
    "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id",
    "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address",
    "shipping_carrier", "shipping_date", "shipping_documentation", "shipping_tracking_number",
    "uncategorized_file", "uncategorized_text",
)  # fmt: skip
DISPUTE_UPDATE = {
    "evidence": sp.obj({name: sp.string(blank=True) for name in EVIDENCE_FIELDS}),
    "metadata": sp.METADATA,
    "submit": sp.boolean(),
    "expand": sp.EXPAND,
}
DISPUTE_LIST = {
    **sp.LIST_PARAMS,
    "created": sp.RANGE,
    "charge": sp.string(),
    "payment_intent": sp.string(),
}
EFW_LIST = {
    **sp.LIST_PARAMS,
    "created": sp.RANGE,
    "charge": sp.string(),
    "payment_intent": sp.string(),
}
PAYOUT_LIST = {
    **sp.LIST_PARAMS,
    "created": sp.RANGE,
    "arrival_date": sp.RANGE,
    "destination": sp.string(),
    "status": sp.enum("canceled", "failed", "in_transit", "paid", "pending"),
}


def _json_fields(body: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    """A test helper's JSON body, checked the way Stripe checks params."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    for name in body:
        if name not in allowed:
            raise invalid(
                f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )
    for name in required:
        if body.get(name) is None:
            raise invalid(f"Missing required param: {name}.", code="parameter_missing", param=name)
    return body


def _choice(body: dict, name: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise invalid(f"Invalid {name}: must be one of {', '.join(choices)}", param=name)
    return value


def _money(amount: int, currency: str) -> str:
    return f"{sp.format_major(amount, currency)} {currency}"


def _metadata_changes(old: dict, new: dict) -> dict:
    return {k: old.get(k) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


class PostPaymentMixin:
    """Refunds, disputes, early fraud warnings and payouts of `StripeSimulator`."""

    # --- shared ------------------------------------------------------------------------

    def _charge_param(self, charge_id: Any) -> dict:
        charge = self._objects["charge"].get(charge_id) if isinstance(charge_id, str) else None
        if charge is None:
            raise invalid(f"No such charge: '{charge_id}'", code="resource_missing", param="charge")
        return charge

    def _refunded_by_refunds(self, charge_id: str) -> int:
        return sum(
            r["amount"]
            for r in self._objects["refund"].values()
            if r["charge"] == charge_id and r["status"] in ("pending", "succeeded")
        )

    def _open_dispute(self, charge_id: str) -> dict | None:
        return next(
            (d for d in self._objects["dispute"].values() if d["charge"] == charge_id), None
        )

    def _settle_fraud_warnings(self, charge_id: str, request: Any, now: int) -> None:
        """A warning stops being actionable once its charge is fully refunded or disputed."""
        for warning in self._objects["early_fraud_warning"].values():
            if warning["charge"] == charge_id and warning["actionable"]:
                warning["actionable"] = False
                self._emit(
                    "radar.early_fraud_warning.updated", warning, request, now, {"actionable": True}
                )

    # --- refunds -----------------------------------------------------------------------

    def create_refund(self, params: dict, request: Any) -> dict:
        p = sp.validate(params, REFUND_CREATE)
        if "charge" not in p and "payment_intent" not in p:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
                param="payment_intent",
            )
        expansions = self._expansions("refund", p.get("expand"))
        with self.lock:
            charge = self._refund_target(p)
            if charge["disputed"]:
                dispute = self._open_dispute(charge["id"])
                if dispute is not None and not dispute["status"].startswith("warning_"):
                    raise StripeError(
                        400,
                        f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                        code="charge_disputed",
                        store=True,
                    )
            remaining = charge["amount_captured"] - self._refunded_by_refunds(charge["id"])
            if remaining <= 0:
                raise StripeError(
                    400,
                    f"Charge {charge['id']} has already been refunded.",
                    code="charge_already_refunded",
                    store=True,
                )
            amount = p.get("amount", remaining)
            if amount < 1:
                raise invalid(
                    "This value must be greater than or equal to 1.",
                    code="parameter_invalid_integer",
                    param="amount",
                )
            if amount > remaining:
                currency = charge["currency"]
                raise invalid(
                    f"Refund amount ({_money(amount, currency)}) is greater than unrefunded "
                    f"amount on charge ({_money(remaining, currency)})",
                    code="amount_too_large",
                    param="amount",
                )
            now = self.clock.unix()
            refund_id = self.new_id("re")
            refund = self._example("refund")
            refund.update(
                id=refund_id,
                amount=amount,
                balance_transaction=self._record_balance(
                    source=refund_id,
                    type_="refund",
                    category="refund",
                    amount=-amount,
                    currency=charge["currency"],
                    description=f"REFUND FOR CHARGE ({charge['description'] or charge['id']})",
                    now=now,
                ),
                charge=charge["id"],
                created=now,
                currency=charge["currency"],
                customer=charge["customer"],
                destination_details={
                    "card": {
                        "reference": None,
                        "reference_status": "pending",
                        "reference_type": "acquirer_reference_number",
                        "type": "refund",
                    },
                    "type": "card",
                },
                metadata=self._merge_metadata({}, p.get("metadata", {})),
                payment_intent=charge["payment_intent"],
                payment_method=charge["payment_method"],
                reason=p.get("reason"),
                status="succeeded",
            )
            self._add("refund", refund)
            previous = self._apply_refunded(charge, amount)
            self._emit("refund.created", refund, request, now)
            self._emit("charge.refunded", charge, request, now, previous)
            if charge["refunded"]:
                self._settle_fraud_warnings(charge["id"], request, now)
            return self._render(refund, expansions)

    def _refund_target(self, p: dict) -> dict:
        """The charge a refund applies to, from `charge` or the PaymentIntent's latest charge."""
        if "payment_intent" in p:
            intent = self._objects["payment_intent"].get(p["payment_intent"])
            if intent is None:
                raise invalid(
                    f"No such payment_intent: '{p['payment_intent']}'",
                    code="resource_missing",
                    param="payment_intent",
                )
            charge = self._objects["charge"].get(intent["latest_charge"] or "")
            if charge is None or charge["status"] != "succeeded":
                raise invalid(
                    f"This PaymentIntent ({intent['id']}) does not have a successful charge to "
                    "refund.",
                    param="payment_intent",
                )
            if "charge" in p and p["charge"] != charge["id"]:
                raise invalid(
                    f"Charge {p['charge']} does not belong to PaymentIntent {intent['id']}.",
                    param="charge",
                )
        else:
            charge = self._charge_param(p["charge"])
            if charge["status"] != "succeeded":
                raise invalid(
                    f"Charge {charge['id']} has no successful payment to refund.", param="charge"
                )
        if not charge["captured"]:
            raise invalid(
                f"Charge {charge['id']} is not captured: cancel its PaymentIntent to release "
                "the authorization instead.",
                param="charge",
            )
        return charge

    @staticmethod
    def _apply_refunded(charge: dict, change: int) -> dict:
        """Move the charge's refunded amount by `change`; returns the previous attributes."""
        previous = {"amount_refunded": charge["amount_refunded"]}
        charge["amount_refunded"] += change
        refunded = charge["amount_refunded"] >= charge["amount"]
        if refunded != charge["refunded"]:
            previous["refunded"] = charge["refunded"]
            charge["refunded"] = refunded
        return previous

    def retrieve_refund(self, refund_id: str, params: dict) -> dict:
        p = sp.validate(params, {"expand": sp.EXPAND})
        expansions = self._expansions("refund", p.get("expand"))
        with self.lock:
            return self._render(self._get("refund", refund_id), expansions)

    def update_refund(self, refund_id: str, params: dict, request: Any) -> dict:
        p = sp.validate(params, REFUND_UPDATE)
        expansions = self._expansions("refund", p.get("expand"))
        with self.lock:
            refund = self._get("refund", refund_id)
            if "metadata" in p:
                old = refund["metadata"]
                refund["metadata"] = self._merge_metadata(old, p["metadata"])
                changes = _metadata_changes(old, refund["metadata"])
                if changes:
                    self._refund_updated(refund, {"metadata": changes}, request)
            return self._render(refund, expansions)

    def _refund_updated(self, refund: dict, previous: dict, request: Any) -> None:
        now = self.clock.unix()
        self._emit("refund.updated", refund, request, now, previous)
        self._emit("charge.refund.updated", refund, request, now, previous)

    def list_refunds(self, params: dict) -> dict:
        p = sp.validate(params, REFUND_LIST)
        return self._filtered_list("refund", p, "/v1/refunds", ("charge", "payment_intent"))

    def fail_refund(self, refund_id: str, body: Any) -> dict:
        """Test helper: the card network sends a succeeded refund back, as Stripe's
        `pm_card_refundFail` test card does some time after the refund."""
        body = _json_fields(body, ("failure_reason",))
        reason = _choice(body, "failure_reason", REFUND_FAILURE_REASONS, "expired_or_canceled_card")
        with self.lock:
            refund = self._get("refund", refund_id)
            if refund["status"] not in ("pending", "succeeded"):
                raise invalid(
                    f"Refund {refund_id} has status {refund['status']}; only a "
                    "pending or succeeded refund can fail."
                )
            now = self.clock.unix()
            request = self._helper_request()
            charge = self._objects["charge"][refund["charge"]]
            previous = {"status": refund["status"]}
            refund.update(
                status="failed",
                failure_reason=reason,
                failure_balance_transaction=self._record_balance(
                    source=refund_id,
                    type_="refund_failure",
                    category="refund_failure",
                    amount=refund["amount"],
                    currency=refund["currency"],
                    description=f"REFUND FAILURE ({reason})",
                    now=now,
                ),
            )
            self._apply_refunded(charge, -refund["amount"])
            self._refund_updated(refund, previous, request)
            self._emit("refund.failed", refund, request, now)
            return self._render(refund)

    # --- disputes ----------------------------------------------------------------------

    def open_dispute(self, body: Any) -> dict:
        """Test helper: the cardholder disputes a captured charge. The disputed amount and the
        dispute fee leave the balance at once, as Stripe withdraws them."""
        body = _json_fields(body, ("charge", "reason", "amount"), required=("charge",))
        reason = _choice(body, "reason", DISPUTE_REASONS, "fraudulent")
        with self.lock:
            charge = self._charge_param(body["charge"])
            if not (charge["captured"] and charge["status"] == "succeeded"):
                raise invalid(
                    f"Charge {charge['id']} was not captured: there is nothing to dispute.",
                    param="charge",
                )
            if self._open_dispute(charge["id"]) is not None:
                raise invalid(f"Charge {charge['id']} is already disputed.", param="charge")
            disputable = charge["amount_captured"] - self._refunded_by_refunds(charge["id"])
            amount = body.get("amount", disputable)
            if (
                isinstance(amount, bool)
                or not isinstance(amount, int)
                or not (1 <= amount <= disputable)
            ):
                raise invalid(f"amount must be an integer from 1 to {disputable}.", param="amount")
            now = self.clock.unix()
            request = self._helper_request()
            card = charge["payment_method_details"]["card"]
            dispute = self._example("dispute")
            dispute.update(
                id=self.new_id("dp"),
                amount=amount,
                balance_transactions=[],
                charge=charge["id"],
                created=now,
                currency=charge["currency"],
                evidence={**dict.fromkeys(EVIDENCE_FIELDS), "enhanced_evidence": {}},
                evidence_details={
                    "due_by": (now // 86400 + EVIDENCE_DUE_DAYS + 1) * 86400 - 1,
                    "enhanced_eligibility": {},
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                enhanced_eligibility_types=[],
                is_charge_refundable=False,
                livemode=False,
                metadata={},
                payment_intent=charge["payment_intent"],
                payment_method_details={
                    "card": {
                        "brand": card["brand"],
                        "case_type": "chargeback",
                        "network": card["network"],
                        "network_reason_code": (
                            VISA_REASON_CODES.get(reason) if card["network"] == "visa" else None
                        ),
                    },
                    "type": "card",
                },
                reason=reason,
                status="needs_response",
            )
            self._add("dispute", dispute)
            charge["disputed"] = True
            self._emit("charge.dispute.created", dispute, request, now)
            fee = DISPUTE_FEE[sp.decimals(charge["currency"])]
            dispute["balance_transactions"].append(
                self._record_balance(
                    source=dispute["id"],
                    type_="adjustment",
                    category="dispute",
                    amount=-amount,
                    fee=fee,
                    fee_description="Dispute fee",
                    currency=charge["currency"],
                    description=f"Chargeback withdrawal for {charge['id']}",
                    now=now,
                )
            )
            self._emit("charge.dispute.funds_withdrawn", dispute, request, now)
            self._settle_fraud_warnings(charge["id"], request, now)
            return self._render(dispute)

    def close_dispute(self, dispute_id: str, body: Any) -> dict:
        """Test helper: the card network decides the dispute; a win gives the money back."""
        body = _json_fields(body, ("status",), required=("status",))
        status = _choice(body, "status", ("won", "lost"), "lost")
        with self.lock:
            dispute = self._get("dispute", dispute_id)
            if dispute["status"] not in OPEN_DISPUTE_STATUSES:
                raise invalid(f"Dispute {dispute_id} is already closed ({dispute['status']}).")
            now = self.clock.unix()
            request = self._helper_request()
            previous = {"status": dispute["status"]}
            dispute["status"] = status
            self._emit("charge.dispute.closed", dispute, request, now, previous)
            if status == "won":
                dispute["balance_transactions"].append(
                    self._record_balance(
                        source=dispute_id,
                        type_="adjustment",
                        category="dispute_reversal",
                        amount=dispute["amount"],
                        currency=dispute["currency"],
                        description=f"Chargeback reversal for {dispute['charge']}",
                        now=now,
                    )
                )
                self._emit("charge.dispute.funds_reinstated", dispute, request, now)
            return self._render(dispute)

    def retrieve_dispute(self, dispute_id: str, params: dict) -> dict:
        p = sp.validate(params, {"expand": sp.EXPAND})
        expansions = self._expansions("dispute", p.get("expand"))
        with self.lock:
            return self._render(self._get("dispute", dispute_id), expansions)

    def update_dispute(self, dispute_id: str, params: dict, request: Any) -> dict:
        p = sp.validate(params, DISPUTE_UPDATE)
        expansions = self._expansions("dispute", p.get("expand"))
        with self.lock:
            dispute = self._get("dispute", dispute_id)
            if dispute["status"] not in OPEN_DISPUTE_STATUSES:
                raise StripeError(
                    400,
                    f"This dispute is already closed ({dispute['status']}): it cannot be updated.",
                    store=True,
                )
            before = copy.deepcopy(dispute)
            if "evidence" in p:
                dispute["evidence"].update(p["evidence"])
                dispute["evidence_details"]["has_evidence"] = True
            if "metadata" in p:
                dispute["metadata"] = self._merge_metadata(dispute["metadata"], p["metadata"])
            # Stripe submits the staged evidence unless told not to (`submit` defaults to true).
            if p.get("submit", True) and dispute["evidence_details"]["has_evidence"]:
                if dispute["status"] in ("needs_response", "warning_needs_response"):
                    dispute["status"] = dispute["status"].replace("needs_response", "under_review")
                    dispute["evidence_details"]["submission_count"] += 1
            previous = {k: v for k, v in before.items() if dispute[k] != v}
            if "metadata" in previous:
                previous["metadata"] = _metadata_changes(before["metadata"], dispute["metadata"])
            if "evidence" in previous:
                previous["evidence"] = {
                    k: v for k, v in before["evidence"].items() if dispute["evidence"][k] != v
                }
            if previous:
                self._emit("charge.dispute.updated", dispute, request, self.clock.unix(), previous)
            return self._render(dispute, expansions)

    def list_disputes(self, params: dict) -> dict:
        p = sp.validate(params, DISPUTE_LIST)
        return self._filtered_list("dispute", p, "/v1/disputes", ("charge", "payment_intent"))

    # --- early fraud warnings ----------------------------------------------------------

    def create_early_fraud_warning(self, body: Any) -> dict:
        """Test helper: the issuer reports a charge as likely fraud. By default the warning is
        actionable unless the charge is already refunded or disputed, as Stripe decides."""
        body = _json_fields(body, ("charge", "fraud_type", "actionable"), required=("charge",))
        fraud_type = _choice(body, "fraud_type", FRAUD_TYPES, "made_with_stolen_card")
        with self.lock:
            charge = self._charge_param(body["charge"])
            actionable = body.get("actionable", not (charge["refunded"] or charge["disputed"]))
            if not isinstance(actionable, bool):
                raise invalid("actionable must be true or false.", param="actionable")
            now = self.clock.unix()
            warning = self._example("early_fraud_warning")
            warning.update(
                id=self.new_id("issfr"),
                actionable=actionable,
                charge=charge["id"],
                created=now,
                fraud_type=fraud_type,
                livemode=False,
                payment_intent=charge["payment_intent"],
            )
            self._add("early_fraud_warning", warning)
            self._emit("radar.early_fraud_warning.created", warning, self._helper_request(), now)
            return self._render(warning)

    def retrieve_early_fraud_warning(self, warning_id: str, params: dict) -> dict:
        p = sp.validate(params, {"expand": sp.EXPAND})
        expansions = self._expansions("early_fraud_warning", p.get("expand"))
        with self.lock:
            return self._render(self._get("early_fraud_warning", warning_id), expansions)

    def list_early_fraud_warnings(self, params: dict) -> dict:
        p = sp.validate(params, EFW_LIST)
        return self._filtered_list(
            "early_fraud_warning", p, "/v1/radar/early_fraud_warnings", ("charge", "payment_intent")
        )

    # --- payouts -----------------------------------------------------------------------

    def create_payouts(self, body: Any) -> dict:
        """Test helper: Stripe's automatic payout. Every available balance transaction not yet
        paid out goes into one payout per currency (only `currency` if given); a currency whose
        available balance is not positive gets none. With `status` "paid" (the default) the
        payout also arrives at once; "pending" leaves that to `pay_payout`.
        """
        body = _json_fields(body, ("currency", "status"))
        status = _choice(body, "status", ("paid", "pending"), "paid")
        currency = body.get("currency")
        if currency is not None:
            currency = sp.validate({"currency": currency}, {"currency": sp.CURRENCY})["currency"]
        with self.lock:
            now = self.clock.unix()
            request = self._helper_request()
            unpaid: dict[str, list[dict]] = {}
            for txn in self._objects["balance_transaction"].values():
                if (
                    txn["id"] not in self._paid_out
                    and txn["type"] != "payout"
                    and txn["available_on"] <= now
                    and currency in (None, txn["currency"])
                ):
                    unpaid.setdefault(txn["currency"], []).append(txn)
            payouts = []
            for code, transactions in sorted(unpaid.items()):
                amount = sum(t["net"] for t in transactions)
                if amount > 0:
                    payouts.append(self._payout(code, amount, transactions, now, request))
            for payout in payouts:
                if status == "paid":
                    self._payout_paid(payout, request, now)
            return {
                "object": "list",
                "data": [self._render(p) for p in payouts],
                "has_more": False,
                "url": "/v1/payouts",
            }

    def _payout(
        self, currency: str, amount: int, included: list[dict], now: int, request: Any
    ) -> dict:
        if self._bank_account is None:
            self._bank_account = self.new_id("ba")
        payout_id = self.new_id("po")
        payout = self._example("payout")
        payout.update(
            id=payout_id,
            amount=amount,
            application_fee=None,
            application_fee_amount=None,
            arrival_date=(now // 86400 + 1) * 86400,
            automatic=True,
            balance_transaction=self._record_balance(
                source=payout_id,
                type_="payout",
                category="payout",
                amount=-amount,
                currency=currency,
                description="STRIPE PAYOUT",
                now=now,
            ),
            created=now,
            currency=currency,
            description="STRIPE PAYOUT",
            destination=self._bank_account,
            failure_balance_transaction=None,
            failure_code=None,
            failure_message=None,
            livemode=False,
            metadata={},
            method="standard",
            original_payout=None,
            payout_method=None,
            reconciliation_status="in_progress",
            reversed_by=None,
            source_type="card",
            statement_descriptor=None,
            status="pending",
            trace_id={"status": "pending", "value": None},
            type="bank_account",
        )
        self._add("payout", payout)
        self._payout_transactions[payout_id] = [t["id"] for t in included]
        self._payout_transactions[payout_id].append(payout["balance_transaction"])
        self._paid_out.update(self._payout_transactions[payout_id])
        self._emit("payout.created", payout, request, now)
        return payout

    def _payout_paid(self, payout: dict, request: Any, now: int) -> None:
        previous = {"status": payout["status"], "reconciliation_status": "in_progress"}
        payout.update(
            status="paid",
            reconciliation_status="completed",
            arrival_date=min(payout["arrival_date"], now),
            trace_id={"status": "supported", "value": self.token(16).upper()},
        )
        self._emit("payout.paid", payout, request, now, previous)
        self._emit("payout.reconciliation_completed", payout, request, now)

    def pay_payout(self, payout_id: str) -> dict:
        """Test helper: a pending payout arrives at the bank."""
        with self.lock:
            payout = self._get("payout", payout_id)
            if payout["status"] != "pending":
                raise invalid(
                    f"Payout {payout_id} has status {payout['status']}; only a "
                    "pending payout can be paid."
                )
            self._payout_paid(payout, self._helper_request(), self.clock.unix())
            return self._render(payout)

    def retrieve_payout(self, payout_id: str, params: dict) -> dict:
        p = sp.validate(params, {"expand": sp.EXPAND})
        expansions = self._expansions("payout", p.get("expand"))
        with self.lock:
            return self._render(self._get("payout", payout_id), expansions)

    def list_payouts(self, params: dict) -> dict:
        p = sp.validate(params, PAYOUT_LIST)

        def keep(po: dict) -> bool:
            return (
                all(po[f] == p[f] for f in ("destination", "status") if f in p)
                and self._in_range(po["created"], p.get("created"))
                and self._in_range(po["arrival_date"], p.get("arrival_date"))
            )

        with self.lock:
            return self._list("payout", p, "/v1/payouts", keep)

    def payout_transaction_ids(self, payout_id: str) -> set[str]:
        """The balance transactions a paid payout settled, its own included; for `payout=`."""
        payout = self._objects["payout"].get(payout_id)
        if payout is None:
            raise invalid(f"No such payout: '{payout_id}'", code="resource_missing", param="payout")
        if payout["status"] != "paid":
            raise invalid(
                f"Payout {payout_id} has status {payout['status']}: its balance transactions "
                "can be listed once it is paid.",
                param="payout",
            )
        return set(self._payout_transactions[payout_id])
