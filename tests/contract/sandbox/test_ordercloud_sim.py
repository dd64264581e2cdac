"""The OrderCloud simulator over HTTP: tokens and roles, list queries, orders, payments, users."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from sandbox.common import dumps_exact, loads_exact

ALL_SCOPES = "OrderAdmin OrderReader BuyerUserAdmin BuyerReader"


def seed(oc_http: httpx.Client, order_id: str, total: str, currency: str, **fields) -> dict:
    order = {
        "ID": order_id,
        "FromUser": {
            "ID": f"u-{order_id}",
            "Username": f"{order_id}@example.com",
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": f"{order_id}@example.com",
        },
        "BillingAddress": {"Street1": "1 Analytical Way", "City": "London", "Country": "GB"},
        "Currency": currency,
        "Subtotal": Decimal(total),
        "Total": Decimal(total),
        **fields,
    }
    response = oc_http.post(
        "/_sandbox/orders", content=dumps_exact(order), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    return loads_exact(response.content)


def call(oc_http: httpx.Client, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    if "json_body" in kwargs:
        kwargs["content"] = dumps_exact(kwargs.pop("json_body"))
        kwargs["headers"] = {"Content-Type": "application/json"}
    return oc_http.request(
        method, path, headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
        **kwargs,
    )  # fmt: skip


@pytest.fixture
def orders(sim, oc_http):
    """Three submitted orders a minute apart and one unsubmitted."""
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    seed(oc_http, "o-1", "10", "USD", xp={"PaymentStatus": "AwaitingPayment", "Region": "us"})
    sim.advance_clock(60)
    seed(oc_http, "o-2", "129.99", "EUR", xp={"PaymentStatus": "Paid"})
    sim.advance_clock(60)
    seed(oc_http, "o-3", "5400", "JPY")
    seed(oc_http, "o-4", "12.350", "KWD", IsSubmitted=False)


def ids(oc_http, token, query: str = "") -> list[str]:
    response = call(oc_http, token, "GET", f"/v1/orders/Incoming?{query}")
    assert response.status_code == 200, response.text
    return [o["ID"] for o in response.json()["Items"]]


# --- auth ----------------------------------------------------------------------------------


def test_client_credentials_grant_gives_requested_roles_the_client_has(oc_http):
    response = oc_http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret-not-real",
            "scope": "OrderReader NotARole",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 600
    assert body["access_token"] and body["refresh_token"]

    denied = call(oc_http, body["access_token"], "PATCH", "/v1/orders/Incoming/o-1", json_body={})
    assert denied.status_code == 403
    assert denied.json() == {
        "Errors": [
            {
                "ErrorCode": "InsufficientRoles",
                "Message": "User does not have role(s) required to perform this action.",
                "Data": {"SufficientRoles": ["OrderAdmin"], "AssignedRoles": ["OrderReader"]},
            }
        ]
    }


def test_password_grant_and_bad_credentials(oc_http):
    form = {
        "grant_type": "password",
        "client_id": "sandbox-client",
        "username": "sandbox-admin",
        "password": "sandbox-password-not-real",
        "scope": "OrderAdmin",
    }
    assert oc_http.post("/oauth/token", data=form).status_code == 200
    wrong_password = oc_http.post("/oauth/token", data={**form, "password": "nope"})
    assert wrong_password.status_code == 400
    assert wrong_password.json()["error"] == "invalid_grant"
    wrong_secret = oc_http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "sandbox-client",
              "client_secret": "nope", "scope": "OrderAdmin"},
    )  # fmt: skip
    assert wrong_secret.status_code == 400
    assert set(wrong_secret.json()) == {"error", "error_description"}
    assert wrong_secret.json()["error"] == "invalid_client"
    unknown = oc_http.post("/oauth/token", data={**form, "grant_type": "implicit"})
    assert unknown.json()["error"] == "unsupported_grant_type"


def test_missing_unknown_and_expired_tokens_are_401(sim, oc_http, oc_token, monkeypatch):
    expected = {
        "Errors": [
            {"ErrorCode": "InvalidToken", "Message": "Access token is invalid or expired.",
             "Data": None}
        ]
    }  # fmt: skip
    missing = oc_http.get("/v1/orders/Incoming")
    assert (missing.status_code, missing.json()) == (401, expected)
    assert call(oc_http, "made-up", "GET", "/v1/orders/Incoming").status_code == 401
    monkeypatch.setattr(sim.ordercloud, "token_lifetime_seconds", 0)
    expired = oc_token(ALL_SCOPES)
    assert call(oc_http, expired, "GET", "/v1/orders/Incoming").json() == expected


def test_full_access_allows_everything(oc_http, oc_token, orders):
    token = oc_token("FullAccess")
    assert call(oc_http, token, "GET", "/v1/orders/Incoming").status_code == 200
    payment = {"ID": "pi_1", "Type": "CreditCard", "Amount": 10, "Accepted": True}
    created = call(oc_http, token, "POST", "/v1/orders/Incoming/o-1/payments", json_body=payment)
    assert created.status_code == 201


def test_transactions_need_order_admin(oc_http, oc_token, orders):
    admin = oc_token()
    payment = {"ID": "pi_1", "Type": "CreditCard", "Amount": 10, "Accepted": True}
    call(oc_http, admin, "POST", "/v1/orders/Incoming/o-1/payments", json_body=payment)
    reader = oc_token("OrderReader BuyerUserAdmin")
    denied = call(
        oc_http, reader, "POST", "/v1/orders/Incoming/o-1/payments/pi_1/transactions",
        json_body={"ID": "ch_1", "DateExecuted": "2026-06-01T10:00:00Z"},
    )  # fmt: skip
    assert denied.status_code == 403


# --- list queries --------------------------------------------------------------------------


def test_lists_only_submitted_orders_unless_asked(oc_http, oc_token, orders):
    token = oc_token()
    assert ids(oc_http, token) == ["o-1", "o-2", "o-3"]
    assert ids(oc_http, token, "IsSubmitted=false") == ["o-4"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Total=>100", ["o-2", "o-3"]),  # numeric, not text, comparison
        ("Total=<129.99", ["o-1"]),
        ("Total=!<129.99", ["o-2", "o-3"]),  # the documented stand-in for >=
        ("Total=>5&Total=<200", ["o-1", "o-2"]),  # a repeated key is AND
        ("Currency=USD|JPY", ["o-1", "o-3"]),
        ("Currency=!USD", ["o-2", "o-3"]),
        ("Currency=!USD&Currency=!EUR", ["o-3"]),
        ("ID=o-*", ["o-1", "o-2", "o-3"]),
        ("FromUser.Email=*-2@example.com", ["o-2"]),
        ("xp.PaymentStatus=paid", ["o-2"]),
        ("xp.PaymentStatus=*", ["o-1", "o-2"]),
        ("xp.PaymentStatus=!*", ["o-3"]),
        ("xp.PaymentStatus=!Paid", ["o-1", "o-3"]),
        ("xp.Region=us|eu", ["o-1"]),
        ("LastUpdated=>2026-06-01T10:00:30Z", ["o-2", "o-3"]),  # dates compare as instants
        ("LastUpdated=<2026-06-01T11:00:30%2B01:00", ["o-1"]),  # 10:00:30Z
        ("DateSubmitted=>2026-06-01", ["o-1", "o-2", "o-3"]),
        ("ID=>o-1&sortBy=ID", ["o-2", "o-3"]),  # the documented way past page 30
    ],
)
def test_filters(oc_http, oc_token, orders, query, expected):
    assert ids(oc_http, oc_token(), query) == expected


def test_sort_by(oc_http, oc_token, orders):
    token = oc_token()
    assert ids(oc_http, token, "sortBy=!Total") == ["o-3", "o-2", "o-1"]
    assert ids(oc_http, token, "sortBy=!LastUpdated") == ["o-3", "o-2", "o-1"]
    assert ids(oc_http, token, "sortBy=xp.PaymentStatus,ID") == ["o-3", "o-1", "o-2"]
    assert ids(oc_http, token, "sortBy=Currency") == ["o-2", "o-3", "o-1"]


def test_paging_meta_and_limits(oc_http, oc_token, orders):
    token = oc_token()
    response = call(oc_http, token, "GET", "/v1/orders/Incoming?pageSize=2&page=2")
    assert response.json()["Meta"] == {
        "Page": 2,
        "PageSize": 2,
        "TotalCount": 3,
        "TotalPages": 2,
        "ItemRange": [3, 3],
        "NextPageKey": None,
    }
    assert [o["ID"] for o in response.json()["Items"]] == ["o-3"]
    default = call(oc_http, token, "GET", "/v1/orders/Incoming").json()["Meta"]
    assert (default["PageSize"], default["ItemRange"]) == (20, [1, 3])

    too_big = call(oc_http, token, "GET", "/v1/orders/Incoming?pageSize=101")
    assert too_big.status_code == 400
    too_far = call(oc_http, token, "GET", "/v1/orders/Incoming?page=31")
    assert too_far.status_code == 400
    assert "ID=>" in too_far.json()["Errors"][0]["Message"]
    assert call(oc_http, token, "GET", "/v1/orders/Incoming?page=30").status_code == 200


def test_bad_filters_are_400(oc_http, oc_token, orders):
    token = oc_token()
    for query in ("Total=>=5", "NoSuchField=1", "sortBy=NoSuchField"):
        response = call(oc_http, token, "GET", f"/v1/orders/Incoming?{query}")
        assert response.status_code == 400, query
        assert response.json()["Errors"][0]["ErrorCode"] == "InvalidRequest"


def test_list_lag_hides_writes_from_lists_only(sim, oc_http, oc_token, monkeypatch):
    monkeypatch.setattr(sim.ordercloud, "list_lag_seconds", 30)
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    token = oc_token()
    seed(oc_http, "o-lag", "10", "USD")
    assert ids(oc_http, token) == []
    assert call(oc_http, token, "GET", "/v1/orders/Incoming/o-lag").status_code == 200
    sim.advance_clock(30)
    assert ids(oc_http, token) == ["o-lag"]

    patch = {"xp": {"PaymentStatus": "Paid"}}
    call(oc_http, token, "PATCH", "/v1/orders/Incoming/o-lag", json_body=patch)
    assert ids(oc_http, token, "xp.PaymentStatus=Paid") == []  # the list still shows the old xp
    assert ids(oc_http, token) == ["o-lag"]
    sim.advance_clock(30)
    assert ids(oc_http, token, "xp.PaymentStatus=Paid") == ["o-lag"]


# --- orders --------------------------------------------------------------------------------


def test_seeded_order_has_every_documented_field_and_exact_money(oc_http, oc_token, orders):
    response = call(oc_http, oc_token(), "GET", "/v1/orders/All/o-4")
    assert '"Total":12.350' in response.text
    order = loads_exact(response.content)
    for name in (
        "ID", "FromUser", "FromUserID", "BillingAddress", "ShippingAddressID", "Comments",
        "Status", "DateCreated", "DateSubmitted", "LastUpdated", "Subtotal", "ShippingCost",
        "TaxCost", "Gratuity", "Fees", "PromotionDiscount", "Currency", "Total", "IsSubmitted",
        "xp", "LineItemCount",
    ):  # fmt: skip
        assert name in order, name
    assert order["Total"] == Decimal("12.350")
    assert (order["Status"], order["IsSubmitted"], order["DateSubmitted"]) == (
        "Unsubmitted",
        False,
        None,
    )
    submitted = call(oc_http, oc_token(), "GET", "/v1/orders/Incoming/o-2").json()
    assert (submitted["Status"], submitted["IsSubmitted"]) == ("Open", True)
    assert submitted["FromUserID"] == "u-o-2"
    assert submitted["DateSubmitted"] == submitted["LastUpdated"] == "2026-06-01T10:01:00+00:00"


def test_patch_deep_merges_xp_bumps_last_updated_and_refuses_read_only(
    sim, oc_http, oc_token, orders
):
    token = oc_token()
    path = "/v1/orders/Incoming/o-1"
    before = call(oc_http, token, "GET", path).json()
    sim.advance_clock(5)
    first = {"xp": {"Stripe": {"PaymentIntentID": "pi_1"}, "PaymentStatus": "Paid"}}
    call(oc_http, token, "PATCH", path, json_body=first)
    response = call(oc_http, token, "PATCH", path, json_body={"xp": {"Stripe": {"Fee": 0.59}}})
    assert response.status_code == 200
    order = loads_exact(response.content)
    assert order["xp"] == {
        "PaymentStatus": "Paid",
        "Region": "us",
        "Stripe": {"PaymentIntentID": "pi_1", "Fee": Decimal("0.59")},
    }
    assert order["LastUpdated"] > before["LastUpdated"]
    assert call(oc_http, token, "PATCH", path, json_body={"Comments": "paid"}).json()["Comments"]

    for field, value in (("Status", "Completed"), ("Total", 1), ("ID", "other"),
                         ("FromUser", {"ID": "x"}), ("IsSubmitted", False)):  # fmt: skip
        refused = call(oc_http, token, "PATCH", path, json_body={field: value})
        assert refused.status_code == 400, field
        assert refused.json()["Errors"][0]["ErrorCode"] == "ReadOnlyProperty"
    unchanged_id = call(oc_http, token, "PATCH", path, json_body={"ID": "o-1", "Comments": "x"})
    assert unchanged_id.status_code == 200

    missing = call(oc_http, token, "PATCH", "/v1/orders/Incoming/nope", json_body={})
    assert missing.status_code == 404
    assert missing.json()["Errors"][0]["ErrorCode"] == "NotFound"
    assert missing.json()["Errors"][0]["Data"] == {"ObjectType": "Order", "ObjectID": "nope"}


def test_order_actions_change_status(sim, oc_http, oc_token, orders):
    token = oc_token()
    sim.advance_clock(10)
    canceled = call(oc_http, token, "POST", "/v1/orders/Incoming/o-1/cancel").json()
    assert canceled["Status"] == "Canceled" and canceled["DateCanceled"] == canceled["LastUpdated"]
    again = call(oc_http, token, "POST", "/v1/orders/Incoming/o-1/cancel")
    assert again.status_code == 400
    assert call(oc_http, token, "POST", "/v1/orders/Incoming/o-2/complete").json()["Status"] == (
        "Completed"
    )
    assert call(oc_http, token, "POST", "/v1/orders/Incoming/o-3/ship").json()["Status"] == (
        "Completed"
    )
    submitted = call(oc_http, token, "POST", "/v1/orders/Incoming/o-4/submit").json()
    assert (submitted["Status"], submitted["IsSubmitted"]) == ("Open", True)


# --- payments ------------------------------------------------------------------------------


def test_payment_and_transaction_creation(sim, oc_http, oc_token, orders):
    token = oc_token()
    order_before = call(oc_http, token, "GET", "/v1/orders/Incoming/o-2").json()
    sim.advance_clock(5)
    payment = {
        "ID": "pi_123",
        "Type": "CreditCard",
        "Amount": Decimal("129.99"),
        "Accepted": True,
        "Description": "Stripe",
        "xp": {"StripeChargeID": "ch_1"},
    }
    base = "/v1/orders/Incoming/o-2/payments"
    created = call(oc_http, token, "POST", base, json_body=payment)
    assert created.status_code == 201
    body = loads_exact(created.content)
    assert body["Transactions"] == [] and body["DateCreated"]
    assert body["Amount"] == Decimal("129.99")

    duplicate = call(oc_http, token, "POST", base, json_body=payment)
    assert duplicate.status_code == 409
    assert duplicate.json() == {
        "Errors": [
            {
                "ErrorCode": "IdExists",
                "Message": "Object already exists.",
                "Data": {"ObjectType": "Payment", "ObjectID": "pi_123"},
            }
        ]
    }

    transaction = {
        "ID": "ch_1",
        "Type": "CreditCard",
        "Amount": Decimal("129.99"),
        "Currency": "EUR",
        "Succeeded": True,
        "ResultCode": "succeeded",
        "ResultMessage": "Payment complete.",
    }
    no_date = call(oc_http, token, "POST", f"{base}/pi_123/transactions", json_body=transaction)
    assert no_date.status_code == 400
    assert no_date.json()["Errors"][0]["ErrorCode"] == "RequiredField"
    transaction["DateExecuted"] = "2026-06-01T10:05:00Z"
    whole = call(oc_http, token, "POST", f"{base}/pi_123/transactions", json_body=transaction)
    assert whole.status_code == 201
    assert whole.json()["ID"] == "pi_123"
    assert [t["ID"] for t in whole.json()["Transactions"]] == ["ch_1"]
    repeat = call(oc_http, token, "POST", f"{base}/pi_123/transactions", json_body=transaction)
    assert repeat.status_code == 409
    assert repeat.json()["Errors"][0]["Data"]["ObjectID"] == "ch_1"

    listed = call(oc_http, token, "GET", base).json()
    assert [p["ID"] for p in listed["Items"]] == ["pi_123"]
    assert call(oc_http, token, "GET", f"{base}/pi_123").json()["Transactions"][0]["ID"] == "ch_1"
    assert call(oc_http, token, "GET", f"{base}/nope").status_code == 404
    order_after = call(oc_http, token, "GET", "/v1/orders/Incoming/o-2").json()
    assert order_after["LastUpdated"] == order_before["LastUpdated"]


# --- buyer users ---------------------------------------------------------------------------


def test_buyer_users(oc_http, oc_token):
    token = oc_token("BuyerUserAdmin")
    user = {
        "ID": "u-1",
        "Username": "ada",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@example.com",
        "Phone": "+44 20 5555 0100",
        "Active": True,
        "xp": {"Stripe": {"CustomerID": "cus_1"}},
    }
    base = "/v1/buyers/sandbox-buyer/users"
    assert call(oc_http, token, "POST", base, json_body=user).status_code == 201
    assert call(oc_http, token, "POST", base, json_body=user).status_code == 409
    patched = call(
        oc_http, token, "PATCH", f"{base}/u-1",
        json_body={"LastName": "King", "xp": {"Stripe": {"SyncedAt": "2026-06-01"}}},
    ).json()  # fmt: skip
    assert patched["LastName"] == "King"
    assert patched["xp"] == {"Stripe": {"CustomerID": "cus_1", "SyncedAt": "2026-06-01"}}
    assert "LastUpdated" not in patched

    reader = oc_token("BuyerReader")
    found = call(oc_http, reader, "GET", f"{base}?Email=ada@example.com").json()["Items"]
    assert [u["ID"] for u in found] == ["u-1"]
    assert call(oc_http, reader, "GET", f"{base}/u-1").json()["Password"] is None
    assert call(oc_http, reader, "POST", base, json_body=user).status_code == 403
    missing_buyer = call(oc_http, reader, "GET", "/v1/buyers/nobody/users")
    assert missing_buyer.status_code == 404
    assert missing_buyer.json()["Errors"][0]["Data"] == {
        "ObjectType": "Buyer",
        "ObjectID": "nobody",
    }
