"""The Sitecore XC simulator over HTTP: Identity Server grants, the engine's authorization and
shop context, OData shapes with $expand, exact Money, Version bumping and stale-version refusal,
statuses and lists, sales activities on payment and refund, over-refunds, the lagging search,
customers, OData key literals, and injected faults worded as command messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest

from sandbox import xc_sim
from sandbox.common import dumps_exact, loads_exact
from stripe_sitecore.backends.xc import client as xc_client

ORDER_EXPAND = "Lines($expand=ChildComponents),Components"
CONTEXT = {
    "ShopName": "CommerceEngineDefaultStorefront",
    "ShopperId": "ShopperId",
    "Language": "en-US",
    "Currency": "USD",
    "Environment": "HabitatAuthoring",
    "GeoLocation": "IpAddress=1.0.0.0",
}
ORDER_TYPE = "Sitecore.Commerce.Plugin.Orders.Order, Sitecore.Commerce.Plugin.Orders"


@pytest.fixture
def xc(sim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.xc_url, timeout=10) as client:
        yield client
    sim.xc.search_lag_seconds = 0


def password_token(xc: httpx.Client, **form) -> httpx.Response:
    return xc.post(
        "/connect/token",
        data={
            "grant_type": "password",
            "username": xc_sim.XC_ADMIN_USER,
            "password": xc_sim.XC_ADMIN_PASSWORD,
            "client_id": xc_sim.XC_PUBLIC_CLIENT_ID,
            "scope": "openid EngineAPI postman_api",
            **form,
        },
    )


@pytest.fixture
def token(xc) -> str:
    response = password_token(xc)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
def call(xc, token) -> Callable[..., httpx.Response]:
    """An engine call with the token and the Habitat context headers."""

    def send(method: str, path: str, body=None, *, headers=None, **kwargs) -> httpx.Response:
        if body is not None:
            kwargs["content"] = dumps_exact(body)
        return xc.request(
            method,
            f"/api/{path}",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                **CONTEXT,
                **(headers or {}),
            },
            **kwargs,
        )

    return send


def seed(xc: httpx.Client, **fields) -> dict:
    order = {
        "Currency": "USD",
        "Lines": [
            {
                "ItemId": "Habitat_Master|6042567|56042567",
                "Quantity": Decimal("2"),
                "UnitListPrice": Decimal("12.35"),
                "ProductName": "Mira Laptop",
            }
        ],
        "Adjustments": [{"AdjustmentType": "Tax", "Amount": Decimal("2.470")}],
        "Customer": {"Email": "ada@example.com"},
        "ShippingParty": {"FirstName": "Ada", "City": "London", "CountryCode": "GB"},
        **fields,
    }
    response = xc.post(
        "/_sandbox/orders", content=dumps_exact(order), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    return loads_exact(response.content)


def get_order(call, order_id: str) -> dict:
    response = call("GET", f"Orders('{order_id}')", params={"$expand": ORDER_EXPAND})
    assert response.status_code == 200, response.text
    return loads_exact(response.content)


def view(call, entity_id: str, view_name: str, action: str, item_id: str = "") -> dict:
    body = {"entityId": entity_id, "viewName": view_name, "forAction": action, "itemId": item_id}
    response = call("PUT", "GetEntityView()", body)
    assert response.status_code == 200, response.text
    return loads_exact(response.content)


def do(call, entity_view: dict, action: str, item_id: str = "", **values) -> dict:
    body = dict(entity_view, Action=action, ItemId=item_id or entity_view["ItemId"])
    properties = [dict(p) for p in entity_view["Properties"]]
    for name, value in values.items():
        match = [p for p in properties if p["Name"] == name]
        if match:
            match[0]["Value"] = value
        else:
            properties.append({"Name": name, "Value": value})
    body["Properties"] = properties
    response = call("PUT", "DoUxAction()", body)
    assert response.status_code == 200, response.text
    return loads_exact(response.content)


def refused(command: dict) -> tuple[str, str, str]:
    assert command["ResponseCode"] == "Error"
    [message] = command["Messages"]
    return message["Code"], message["CommerceTermKey"], message["Text"]


def sales_activities(call, order_id: str) -> list[dict]:
    response = call(
        "GET", f"GetOrderSalesActivities(orderId='{order_id}')", params={"$expand": "Components"}
    )
    assert response.status_code == 200, response.text
    body = loads_exact(response.content)
    assert body["@odata.context"].endswith("/api/$metadata#SalesActivities")
    return body["value"]


def set_status(call, order_id: str, status: str) -> dict:
    response = call("PUT", "SetOrderStatus()", {"orderId": order_id, "status": status})
    assert response.status_code == 200, response.text
    return loads_exact(response.content)


def list_ids(call, list_id: str, type_name: str = ORDER_TYPE, skip=0, take=10) -> list[str]:
    path = f"GetList(id='{list_id}',type='{type_name}',skip={skip},take={take})"
    response = call("GET", path, params={"$expand": "Items"})
    assert response.status_code == 200, response.text
    return [item["Id"] for item in response.json()["Items"]]


# --- identity server ---------------------------------------------------------------------------


def test_both_grants_give_bearer_tokens_and_refusals_are_oauth_errors(xc):
    answer = password_token(xc).json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
    assert answer["scope"] == "openid EngineAPI postman_api"

    assert password_token(xc, password="not-it").json() == {
        "error": "invalid_grant",
        "error_description": "invalid_username_or_password",
    }
    credentials = {
        "grant_type": "client_credentials",
        "client_id": xc_sim.XC_CLIENT_ID,
        "client_secret": xc_sim.XC_CLIENT_SECRET,
        "scope": "EngineAPI",
    }
    assert xc.post("/connect/token", data=credentials).status_code == 200
    for changed, error in [
        ({"client_secret": "wrong"}, "invalid_client"),
        # Identity scopes need a user.
        ({"scope": "openid EngineAPI"}, "invalid_scope"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
    ]:
        response = xc.post("/connect/token", data={**credentials, **changed})
        assert (response.status_code, response.json()["error"]) == (400, error)
    # The public client takes only the password grant.
    public = {**credentials, "client_id": xc_sim.XC_PUBLIC_CLIENT_ID}
    public.pop("client_secret")
    assert xc.post("/connect/token", data=public).json()["error"] == "unauthorized_client"


def test_the_engine_wants_a_token_a_commerce_role_and_a_known_shop(sim, xc, call, monkeypatch):
    anonymous = xc.get("/api/Orders('Entity-Order-1')", headers=CONTEXT)
    assert anonymous.status_code == 401 and anonymous.content == b""
    assert anonymous.headers["www-authenticate"].startswith("Bearer")

    monkeypatch.setitem(
        sim.xc.users, "sitecore\\reader", {"password": "reader-not-real", "roles": ()}
    )
    reader = password_token(xc, username="sitecore\\reader", password="reader-not-real")
    forbidden = xc.get(
        "/api/Orders('Entity-Order-1')",
        headers={**CONTEXT, "Authorization": f"Bearer {reader.json()['access_token']}"},
    )
    assert forbidden.status_code == 403

    shop = call("GET", "Orders('Entity-Order-1')", headers={"ShopName": "NoSuchShop"})
    body = shop.json()
    assert shop.status_code == 400
    assert body["@odata.context"].endswith("/api/$metadata#Sitecore.Commerce.Core.CommandMessage")
    assert (body["Code"], body["CommerceTermKey"], body["Text"]) == (
        "Error",
        "InvalidShop",
        "Shop 'NoSuchShop' does not exist.",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00", body["MessageDate"])


# --- orders --------------------------------------------------------------------------------------


def test_an_order_is_odata_with_components_and_lines_only_when_expanded(xc, call):
    order_id = seed(xc)["Id"]
    bare = call("GET", f"Orders('{order_id}')").json()
    assert bare["@odata.context"].endswith("/api/$metadata#Orders/$entity")
    assert bare["@odata.type"] == "#Sitecore.Commerce.Plugin.Orders.Order"
    assert "Components" not in bare and "Lines" not in bare
    assert (bare["Status"], bare["Version"]) == ("Pending", 1)

    full = get_order(call, order_id)
    types = [c["@odata.type"] for c in full["Components"]]
    assert types == [
        "#Sitecore.Commerce.Core.ContactComponent",
        "#Sitecore.Commerce.Plugin.Fulfillment.PhysicalFulfillmentComponent",
        "#Sitecore.Commerce.Plugin.ManagedLists.ListMembershipsComponent",
    ]
    contact, fulfillment = full["Components"][0], full["Components"][1]
    assert contact["Email"] == "ada@example.com" and contact["CustomerId"]
    assert fulfillment["ShippingParty"]["@odata.type"] == "#Sitecore.Commerce.Core.Party"
    assert fulfillment["ShippingParty"]["City"] == "London"
    [line] = full["Lines"]
    assert line["@odata.type"] == "#Sitecore.Commerce.Plugin.Carts.CartLineComponent"
    assert (line["ItemId"], line["Quantity"]) == ("Habitat_Master|6042567|56042567", 2)
    assert [c["@odata.type"] for c in line["ChildComponents"]] == [
        "#Sitecore.Commerce.Plugin.Carts.CartProductComponent",
        "#Sitecore.Commerce.Plugin.Catalog.ItemVariationSelectedComponent",
    ]
    assert line["ChildComponents"][1]["VariationId"] == "56042567"
    shallow = call("GET", f"Orders('{order_id}')", params={"$expand": "Lines,Components"})
    assert "ChildComponents" not in shallow.json()["Lines"][0]


def test_money_is_written_digit_for_digit(xc, call):
    order_id = seed(xc)["Id"]
    raw = call("GET", f"Orders('{order_id}')", params={"$expand": ORDER_EXPAND}).content
    assert b'"SubTotal":{"CurrencyCode":"USD","Amount":24.70}' in raw
    assert b'"AdjustmentsTotal":{"CurrencyCode":"USD","Amount":2.470}' in raw
    assert b'"GrandTotal":{"CurrencyCode":"USD","Amount":27.170}' in raw
    assert b'"UnitListPrice":{"CurrencyCode":"USD","Amount":12.35}' in raw
    totals = loads_exact(raw)["Totals"]
    assert totals["GrandTotal"]["Amount"] == Decimal("27.170")
    assert isinstance(totals["GrandTotal"]["Amount"], Decimal)


def test_every_write_bumps_the_version_and_a_stale_version_is_refused(xc, call):
    order_id = seed(xc)["Id"]
    master = view(call, order_id, "Master", "HoldOrder")
    [version] = master["Properties"]
    assert master["@odata.type"] == "#Sitecore.Commerce.EntityViews.EntityView"
    assert (version["Name"], version["Value"], version["IsHidden"]) == ("Version", "1", True)

    # Someone else writes after the view was read.
    assert set_status(call, order_id, "Pending")["ResponseCode"] == "Ok"
    assert get_order(call, order_id)["Version"] == 2
    code, term, text = refused(do(call, master, "HoldOrder"))
    assert (code, term) == ("ValidationError", xc_sim.VERSION_CONFLICT_TERM_KEY)
    assert "version 1" in text and "version 2" in text
    after = get_order(call, order_id)
    assert (after["Status"], after["Version"]) == ("Pending", 2)

    assert do(call, view(call, order_id, "Master", "HoldOrder"), "HoldOrder")["ResponseCode"] == (
        "Ok"
    )
    held = get_order(call, order_id)
    assert (held["Status"], held["Version"]) == ("OnHold", 3)
    assert held["DateUpdated"] > after["DateUpdated"]

    without = dict(master, Properties=[])
    assert refused(do(call, without, "ReleaseOrder"))[:2] == (
        "ValidationError",
        "InvalidOrMissingPropertyValue",
    )


def test_the_client_recognises_the_simulators_refusals():
    assert xc_sim.VERSION_CONFLICT_TERM_KEY in xc_client.VERSION_CONFLICT_TERM_KEYS
    assert xc_sim.DUPLICATE_CUSTOMER_TERM_KEY in xc_client.ALREADY_EXISTS_TERM_KEYS


def test_statuses_standard_and_custom_move_orders_between_lists(xc, call):
    a, b = seed(xc)["Id"], seed(xc)["Id"]
    assert list_ids(call, "PendingOrders") == [a, b]
    set_status(call, a, "WaitingForPayment")
    assert get_order(call, a)["Status"] == "WaitingForPayment"
    assert list_ids(call, "PendingOrders") == [b]
    assert list_ids(call, "Orders") == [a, b]

    assert call("PUT", "CancelOrder()", {"orderId": a}).json()["ResponseCode"] == "Ok"
    assert get_order(call, a)["Status"] == "Cancelled"
    assert list_ids(call, "CancelledOrders") == [a]
    set_status(call, b, "Completed")
    code, term, _ = refused(call("PUT", "CancelOrder()", {"orderId": b}).json())
    assert (code, term) == ("ValidationError", "InvalidOrderState")
    assert refused(set_status(call, "Entity-Order-nope", "Paid"))[1] == "EntityNotFound"
    assert list_ids(call, "OnHoldOrders") == []


def test_lists_page_with_skip_and_take_and_check_their_type(xc, call):
    ids = [seed(xc)["Id"] for _ in range(5)]
    assert list_ids(call, "Orders", take=2) == ids[:2]
    assert list_ids(call, "Orders", skip=2, take=2) == ids[2:4]
    assert list_ids(call, "Orders", skip=4, take=2) == ids[4:]
    wrong = call("GET", "GetList(id='Orders',type='Some.Other.Type',skip=0,take=1)")
    assert (wrong.status_code, wrong.json()["CommerceTermKey"]) == (400, "InvalidListType")
    too_many = call("GET", f"GetList(id='Orders',type='{ORDER_TYPE}',skip=0,take=101)")
    assert too_many.status_code == 400
    unexpanded = call("GET", f"GetList(id='Orders',type='{ORDER_TYPE}',skip=0,take=2)").json()
    assert unexpanded["Name"] == "Orders" and "Items" not in unexpanded


# --- payments and the ledger ---------------------------------------------------------------------


def add_payment(call, order_id: str, amount: str, **values) -> dict:
    payment_view = view(call, order_id, "OrderPaymentDetails", "AddPayment")
    return do(
        call,
        payment_view,
        "AddPayment",
        Amount=amount,
        PaymentId=values.pop("PaymentId", "pi_1"),
        TransactionId=values.pop("TransactionId", "ch_1"),
        **values,
    )


def test_a_federated_payment_needs_the_order_on_hold_and_makes_a_sales_activity(xc, call):
    order = seed(xc)
    order_id = order["Id"]
    assert refused(add_payment(call, order_id, "27.170"))[:2] == (
        "ValidationError",
        "InvalidOrderState",
    )
    do(call, view(call, order_id, "Master", "HoldOrder"), "HoldOrder")
    payment_view = view(call, order_id, "OrderPaymentDetails", "AddPayment")
    offered = {p["Name"]: p["Value"] for p in payment_view["Properties"]}
    assert (offered["Amount"], offered["Currency"], offered["Option"]) == (
        "27.170",
        "USD",
        "Federated",
    )
    assert add_payment(call, order_id, "27.170", MaskedNumber="4242")["ResponseCode"] == "Ok"

    paid = get_order(call, order_id)
    [payment] = [c for c in paid["Components"] if c["@odata.type"] == xc_sim.T_PAYMENT]
    assert (payment["Id"], payment["TransactionId"], payment["MaskedNumber"]) == (
        "pi_1",
        "ch_1",
        "4242",
    )
    assert payment["Amount"] == {"CurrencyCode": "USD", "Amount": Decimal("27.170")}
    assert paid["Totals"]["PaymentsTotal"]["Amount"] == Decimal("27.170")
    assert paid["Version"] == 3

    [charge] = sales_activities(call, order_id)
    assert charge["@odata.type"] == "#Sitecore.Commerce.Plugin.Orders.SalesActivity"
    assert charge["ActivityAmount"] == {"CurrencyCode": "USD", "Amount": Decimal("27.170")}
    assert (charge["PaymentStatus"], charge["Order"]["EntityTarget"]) == ("Settled", order_id)
    contact = paid["Components"][0]
    assert charge["Customer"]["EntityTarget"] == contact["CustomerId"]
    activity_type = "Sitecore.Commerce.Plugin.Orders.SalesActivity, Sitecore.Commerce.Plugin.Orders"
    assert list_ids(call, "SalesCharges", activity_type) == [charge["Id"]]
    assert list_ids(call, f"OrderSalesActivities-{order['FriendlyId']}", activity_type) == [
        charge["Id"]
    ]
    # The same payment id twice is refused; another currency too.
    assert refused(add_payment(call, order_id, "1.00"))[1] == "PaymentAlreadyExists"
    assert refused(add_payment(call, order_id, "1.00", PaymentId="pi_2", Currency="EUR"))[1] == (
        "InvalidCurrency"
    )


def test_refunds_are_partial_negative_activities_and_never_more_than_captured(sim, xc, call):
    order_id = seed(xc)["Id"]
    do(call, view(call, order_id, "Master", "HoldOrder"), "HoldOrder")
    add_payment(call, order_id, "27.170")

    def refund(amount: str, refund_id: str) -> dict:
        refund_view = view(call, order_id, "OrderPayments", "RefundPayment", item_id="pi_1")
        return do(call, refund_view, "RefundPayment", Amount=amount, TransactionId=refund_id)

    # The engine's sample refund wants the order completed first.
    assert refused(refund("5.00", "re_1"))[:2] == ("ValidationError", "InvalidOrderState")
    set_status(call, order_id, "Completed")
    assert refund("5.00", "re_1")["ResponseCode"] == "Ok"
    order = get_order(call, order_id)
    [payment] = [c for c in order["Components"] if c["@odata.type"] == xc_sim.T_PAYMENT]
    assert payment["Amount"]["Amount"] == Decimal("22.170")

    assert refused(refund("22.171", "re_2")) == (
        "Error",
        "IllegalRefundOperation",
        "Order Federated Payment amount is less than refund amount",
    )
    assert refund("22.170", "re_3")["ResponseCode"] == "Ok"
    order = get_order(call, order_id)
    assert not [c for c in order["Components"] if c["@odata.type"] == xc_sim.T_PAYMENT]
    assert order["Totals"]["PaymentsTotal"]["Amount"] == 0
    activities = sales_activities(call, order_id)
    assert [(str(a["ActivityAmount"]["Amount"]), a["PaymentStatus"]) for a in activities] == [
        ("27.170", "Settled"),
        ("-5.00", "Completed"),
        ("-22.170", "Completed"),
    ]
    assert [a["Name"] for a in activities[1:]] == ["Refund the Federated Payment"] * 2
    assert [a["Components"][0]["TransactionId"] for a in activities] == ["ch_1", "re_1", "re_3"]
    # Nothing left to refund.
    assert refused(refund("1.00", "re_4"))[1] == "InvalidOrMissingPropertyValue"


def test_a_void_releases_the_payment_before_the_order_is_released(xc, call):
    order_id = seed(xc)["Id"]
    do(call, view(call, order_id, "Master", "HoldOrder"), "HoldOrder")
    add_payment(call, order_id, "27.170")
    void_view = view(call, order_id, "OrderPayments", "VoidPayment", item_id="pi_1")
    assert do(call, void_view, "VoidPayment")["ResponseCode"] == "Ok"
    order = get_order(call, order_id)
    assert order["Totals"]["PaymentsTotal"]["Amount"] == 0
    amounts = [str(a["ActivityAmount"]["Amount"]) for a in sales_activities(call, order_id)]
    assert amounts == ["27.170", "-27.170"]


# --- search --------------------------------------------------------------------------------------


def search(call, scope="OrdersScope", **body) -> httpx.Response:
    return call("PUT", "Search()", {"scope": scope, "term": "*", "skip": 0, "top": 10, **body})


def test_the_search_index_lags_and_filters_on_date_updated(sim, xc, call):
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    sim.xc.search_lag_seconds = 30
    first = seed(xc)["Id"]
    sim.advance_clock(60)
    second = seed(xc)["Id"]
    window = "DateUpdated ge 2026-06-01T09:00:00Z and DateUpdated lt 2026-06-01T11:00:00Z"
    found = search(call, filter=window, orderBy="DateUpdated asc").json()
    assert found["@odata.context"].endswith("#Sitecore.Commerce.Plugin.Search.SearchResults")
    # The second order is not indexed yet.
    assert [d["EntityId"] for d in found["Documents"]] == [first]

    sim.advance_clock(31)
    found = search(call, filter=window, orderBy="DateUpdated desc").json()
    assert [d["EntityId"] for d in found["Documents"]] == [second, first]
    assert found["TotalItemCount"] == 2
    narrow = "DateUpdated ge 2026-06-01T10:00:30Z and DateUpdated lt 2026-06-01T11:00:00Z"
    assert [d["EntityId"] for d in search(call, filter=narrow).json()["Documents"]] == [second]

    # A change shows in the index only after the lag; until then the old document stands.
    set_status(call, first, "Completed")
    doc = search(call, filter=f"EntityId eq '{first}'").json()["Documents"][0]
    assert doc["Status"] == "Pending"
    sim.advance_clock(30)
    doc = search(call, filter=f"EntityId eq '{first}'").json()["Documents"][0]
    assert (doc["Status"], doc["DateUpdated"]) == ("Completed", "2026-06-01T10:01:31.0000000+00:00")


def test_search_pages_with_skip_and_top_and_refuses_what_it_cannot_do(sim, xc, call):
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    ids = []
    for _ in range(5):
        ids.append(seed(xc)["Id"])
        sim.advance_clock(1)
    pages = [
        [
            d["EntityId"]
            for d in search(call, orderBy="DateUpdated asc", skip=skip, top=2).json()["Documents"]
        ]
        for skip in (0, 2, 4)
    ]
    assert pages == [ids[:2], ids[2:4], ids[4:]]
    for body, term in [
        ({"scope": "NoScope"}, "InvalidSearchScope"),
        ({"top": 101}, "InvalidOrMissingPropertyValue"),
        ({"filter": "Nope eq 'x'"}, "InvalidFilter"),
        ({"filter": "DateUpdated ge yesterday"}, "InvalidFilter"),
        ({"filter": "Status eq 'Pending' or Status eq 'OnHold'"}, "InvalidFilter"),
    ]:
        response = search(call, **body)
        assert (response.status_code, response.json()["CommerceTermKey"]) == (400, term)


# --- customers -----------------------------------------------------------------------------------


def test_customers_are_added_and_edited_by_view_and_read_by_id_or_email(sim, xc, call):
    add_view = view(call, "", "Details", "AddCustomer")
    assert "Version" not in {p["Name"] for p in add_view["Properties"]}
    values = {"Email": "o'brien@example.com", "FirstName": "Jane", "Password": "Sandbox-1"}
    added = do(call, add_view, "AddCustomer", **values)
    [model] = added["Models"]
    assert model["@odata.type"] == "#Sitecore.Commerce.Plugin.Customers.CustomerAdded"
    customer_id = model["CustomerId"]
    assert customer_id.startswith("Entity-Customer-")

    # An e-mail key with a quote, doubled inside the literal.
    by_email = call("GET", "Customers('o''brien@example.com')", params={"$expand": "Components"})
    customer = by_email.json()
    assert customer["@odata.context"].endswith("$metadata#Customers/$entity")
    assert (customer["Id"], customer["AccountStatus"], customer["Version"]) == (
        customer_id,
        "ActiveAccount",
        1,
    )
    assert customer["LoginName"] == "CommerceUsers\\o'brien@example.com"
    assert refused(do(call, add_view, "AddCustomer", **values))[:2] == (
        "ValidationError",
        xc_sim.DUPLICATE_CUSTOMER_TERM_KEY,
    )

    edit_view = view(call, customer_id, "Details", "EditCustomer")
    assert do(call, edit_view, "EditCustomer", LastName="Doe", PhoneNumber="+44 20")[
        "ResponseCode"
    ] == ("Ok")
    assert refused(do(call, edit_view, "EditCustomer", LastName="Stale"))[1] == (
        xc_sim.VERSION_CONFLICT_TERM_KEY
    )
    edited = call("GET", f"Customers('{customer_id}')", params={"$expand": "Components"}).json()
    assert (edited["LastName"], edited["Version"]) == ("Doe", 2)
    details = [c for c in edited["Components"] if c["@odata.type"] == xc_sim.T_CUSTOMER_DETAILS]
    assert details[0]["View"]["Properties"] == [{"Name": "PhoneNumber", "Value": "+44 20"}]
    customer_type = (
        "Sitecore.Commerce.Plugin.Customers.Customer, Sitecore.Commerce.Plugin.Customers"
    )
    assert list_ids(call, "Customers", customer_type) == [customer_id]


# --- keys and faults -----------------------------------------------------------------------------


def test_keys_must_be_odata_string_literals(call):
    assert call("GET", "Orders(Entity-Order-1)").status_code == 400
    assert call("GET", "Orders('a'b')").status_code == 400
    missing = call("GET", "Orders('Entity-Order-nope')")
    assert (missing.status_code, missing.json()["CommerceTermKey"]) == (404, "EntityNotFound")
    assert missing.json()["Text"] == "Entity Entity-Order-nope was not found."


def test_injected_faults_are_worded_as_command_messages(sim, xc, call):
    order_id = seed(xc)["Id"]
    route = "GET /api/Orders({key})"
    for rule, status, term, text in [
        ({"error_rate": 1, "statuses": [503]}, 503, "UnexpectedError",
         "An unexpected error occurred."),
        ({"rate_limit_rate": 1, "retry_after": 3}, 429, "TooManyRequests",
         "Too many requests; retry later."),
        ({"error_rate": 1, "statuses": [400]}, 400, "InvalidRequest",
         "The request is invalid (injected)."),
    ]:  # fmt: skip
        sim.set_faults(xc=[{"route": route, "times": 1, **rule}])
        response = call("GET", f"Orders('{order_id}')")
        body = response.json()
        assert response.status_code == status
        assert body["@odata.context"].endswith("#Sitecore.Commerce.Core.CommandMessage")
        assert (body["CommerceTermKey"], body["Text"]) == (term, text)
        assert body["Code"] in ("Error", "ValidationError") and body["MessageDate"]
        if status == 429:
            assert response.headers["retry-after"] == "3"
    assert call("GET", f"Orders('{order_id}')").status_code == 200
    counts = sim.request_counts()["xc"]
    assert counts["routes"][route] == 4
    assert counts["faulted"]["kinds"] == {"error": 2, "rate_limit": 1}
