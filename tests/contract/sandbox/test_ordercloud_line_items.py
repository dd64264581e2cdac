"""OrderCloud simulator line items: the SDK's LineItem shape, the list and worksheet routes, order
totals that follow from the lines, and the demo seed's orders with lines."""

from __future__ import annotations

import random
from decimal import Decimal

import httpx
import pytest

from sandbox.common import dumps_exact, loads_exact
from sandbox.erp_sim import DEFAULT_STOCK
from sandbox.seed import CATALOG, GIFT_CARD, demo_order, demo_orders, seed_demo_orders

D = Decimal
# The SDK's LineItem (ordercloud-javascript-sdk src/models/LineItem.ts), written out here so
# that a field the simulator drops fails this test.
SDK_LINE_ITEM_FIELDS = {
    "ID", "ProductID", "Quantity", "BundleItemID", "IsBundle", "DateAdded", "QuantityShipped",
    "UnitPrice", "PromotionDiscount", "LineTotal", "LineSubtotal", "CostCenter", "DateNeeded",
    "ShippingAccount", "ShippingAddressID", "ShipFromAddressID", "Product", "Variant",
    "ShippingAddress", "ShipFromAddress", "SupplierID", "InventoryRecordID", "PriceScheduleID",
    "IsOnSale", "PriceOverridden", "Specs", "IncomingOrderID", "OutgoingOrderID", "xp",
}  # fmt: skip
SDK_WORKSHEET_FIELDS = {
    "Order", "LineItems", "OrderPromotions", "Subscription", "ShipEstimateResponse",
    "OrderCalculateResponse", "OrderSubmitResponse", "OrderSubmitForApprovalResponse",
    "OrderApprovedResponse", "SubscriptionIntegrationResponse",
}  # fmt: skip
HOME = {"ID": "home", "FirstName": "Ada", "Street1": "1 Analytical Way", "City": "London",
        "Zip": "N1 1AA", "Country": "GB"}  # fmt: skip
GIFT = {"ID": "gift", "FirstName": "Charles", "Street1": "2 Difference St", "City": "Leeds",
        "Country": "GB"}  # fmt: skip


def post_seed(oc_http: httpx.Client, order: dict) -> httpx.Response:
    return oc_http.post(
        "/_sandbox/orders", content=dumps_exact(order), headers={"Content-Type": "application/json"}
    )


def order_body(order_id: str = "o-lines", currency: str = "GBP", **fields) -> dict:
    return {
        "ID": order_id,
        "FromUser": {"ID": "u-1", "Username": "ada", "FirstName": "Ada", "LastName": "L",
                     "Email": "ada@example.com"},
        "BillingAddress": HOME,
        "Currency": currency,
        **fields,
    }  # fmt: skip


def three_lines() -> dict:
    """Lines with a variant, spec markups of both kinds, two shipping addresses, a line and an
    order promotion and a selected ship method per address."""
    return {
        "LineItems": [
            {
                "ID": "L1",
                "ProductID": "TEE",
                "Quantity": 3,
                "UnitPrice": D("19.99"),
                "Product": {"Name": "T-shirt"},
                "Variant": {"ID": "TEE-XL", "Name": "T-shirt, XL"},
                "Specs": [
                    {"SpecID": "Size", "OptionID": "XL", "Value": "XL",
                     "PriceMarkupType": "AmountPerQuantity", "PriceMarkup": D("2.00")},
                    {"SpecID": "Engraving", "Value": "AL", "PriceMarkupType": "Percentage",
                     "PriceMarkup": D("7.5")},
                ],
                "ShippingAddress": HOME,
            },  # fmt: skip
            {"ID": "L2", "ProductID": "MUG", "Quantity": 2, "UnitPrice": D("8.25"),
             "ShippingAddress": HOME, "xp": {"TaxCost": D("3.30")}},  # fmt: skip
            {"ID": "L3", "ProductID": "BAG", "Quantity": 1, "UnitPrice": D("15"),
             "ShippingAddress": GIFT, "ShipFromAddress": {"ID": "wh-1", "City": "Derby",
                                                          "Country": "GB"}},  # fmt: skip
        ],
        "OrderPromotions": [
            {"ID": "TEN", "Code": "TEN", "Amount": D("7.05"), "LineItemID": "L1"},
            {"ID": "WELCOME", "Code": "WELCOME", "Amount": D("4.00")},
        ],
        "ShipEstimateResponse": {
            "ShipEstimates": [
                {"ID": "home", "SelectedShipMethodID": "STD",
                 "ShipMethods": [{"ID": "STD", "Name": "Standard", "Cost": D("3.99")},
                                 {"ID": "EXP", "Name": "Express", "Cost": D("9.99")}],
                 "ShipEstimateItems": [{"LineItemID": "L1"}, {"LineItemID": "L2"}]},
                {"ID": "gift", "SelectedShipMethodID": "EXP",
                 "ShipMethods": [{"ID": "STD", "Name": "Standard", "Cost": D("3.99")},
                                 {"ID": "EXP", "Name": "Express", "Cost": D("9.99")}],
                 "ShipEstimateItems": [{"LineItemID": "L3", "Quantity": 1}]},
            ]
        },
    }  # fmt: skip


def get(oc_http: httpx.Client, token: str, path: str) -> httpx.Response:
    return oc_http.get(path, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def seeded(sim, oc_http) -> dict:
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    response = post_seed(oc_http, order_body(TaxCost=D("12.60"), **three_lines()))
    assert response.status_code == 201, response.text
    return loads_exact(response.content)


def test_line_items_have_the_sdk_shape_and_exact_computed_money(oc_http, oc_token, seeded):
    response = get(oc_http, oc_token("OrderReader"), "/v1/orders/Incoming/o-lines/lineitems")
    assert response.status_code == 200, response.text
    listed = loads_exact(response.content)
    assert [line["ID"] for line in listed["Items"]] == ["L1", "L2", "L3"]
    first, second, third = listed["Items"]
    for line in listed["Items"]:
        assert set(line) == SDK_LINE_ITEM_FIELDS
    # 19.99 + 2.00 per unit + 7.5 % of 19.99 (1.49925, rounded half up to 1.50) = 23.49
    assert first["UnitPrice"] == D("23.49")
    assert first["LineSubtotal"] == D("70.47")  # UnitPrice x Quantity
    assert first["PromotionDiscount"] == D("7.05")  # its line-level promotion
    assert first["LineTotal"] == D("63.42")  # LineSubtotal - PromotionDiscount
    assert '"LineSubtotal":70.47' in response.text and '"UnitPrice":8.25' in response.text
    assert (second["LineSubtotal"], second["PromotionDiscount"], second["LineTotal"]) == (
        D("16.50"), 0, D("16.50"))  # fmt: skip
    assert first["Product"]["ID"] == "TEE" and first["Product"]["Name"] == "T-shirt"
    assert first["Variant"]["ID"] == "TEE-XL"
    assert [(s["SpecID"], s["Value"], s["PriceMarkupType"]) for s in first["Specs"]] == [
        ("Size", "XL", "AmountPerQuantity"), ("Engraving", "AL", "Percentage")]  # fmt: skip
    assert first["ShippingAddress"]["Street1"] == "1 Analytical Way"
    assert first["ShippingAddressID"] == "home" and third["ShippingAddressID"] == "gift"
    assert third["ShipFromAddress"]["City"] == "Derby" and third["ShipFromAddressID"] == "wh-1"
    assert second["xp"] == {"TaxCost": D("3.30")}
    assert first["DateAdded"] == "2026-06-01T10:00:00+00:00"
    assert (first["QuantityShipped"], first["IsBundle"], first["PriceOverridden"]) == (
        0, False, False)  # fmt: skip

    one = get(oc_http, oc_token("OrderReader"), "/v1/orders/Incoming/o-lines/lineitems/L3")
    assert loads_exact(one.content) == third
    missing = get(oc_http, oc_token("OrderReader"), "/v1/orders/Incoming/o-lines/lineitems/L9")
    assert missing.status_code == 404
    assert missing.json()["Errors"][0]["Data"] == {"ObjectType": "LineItem", "ObjectID": "L9"}


def test_order_totals_follow_from_the_lines_promotions_and_ship_methods(oc_token, oc_http, seeded):
    order = loads_exact(get(oc_http, oc_token(), "/v1/orders/Incoming/o-lines").content)
    assert order == seeded
    assert order["LineItemCount"] == 3
    assert order["Subtotal"] == D("70.47") + D("16.50") + D("15")  # sum of LineSubtotals
    assert order["PromotionDiscount"] == D("11.05")  # every promotion, line and order level
    assert order["ShippingCost"] == D("3.99") + D("9.99")  # the selected method per estimate
    assert order["TaxCost"] == D("12.60")  # given: the tax integration's figure is kept
    # Subtotal + ShippingCost + TaxCost - PromotionDiscount
    assert order["Total"] == D("101.97") + D("13.98") + D("12.60") - D("11.05")


def test_a_seed_that_gives_totals_keeps_them_even_when_the_lines_disagree(oc_http):
    body = order_body("o-off", Subtotal=D("100.00"), Total=D("100.00"), **three_lines())
    order = loads_exact(post_seed(oc_http, body).content)
    # So tests can make the order the ERP flow must refuse (totals that do not add up).
    assert (order["Subtotal"], order["Total"]) == (D("100.00"), D("100.00"))
    assert order["ShippingCost"] == D("13.98")  # what the seed left out is still computed


@pytest.mark.parametrize(
    ("currency", "base", "expected"),
    [("JPY", 1999, 2149), ("KWD", D("4.250"), D("4.569")), ("EUR", D("0.99"), D("1.06"))],
)
def test_percentage_markups_are_rounded_to_the_currency_exponent(
    oc_http, oc_token, currency, base, expected
):
    # 7.5 %: JPY 1999 -> 149.925 -> 150; KWD 4.250 -> 0.31875 -> 0.319; EUR 0.99 -> 0.07425 -> 0.07
    spec = {"SpecID": "S", "PriceMarkupType": "Percentage", "PriceMarkup": D("7.5")}
    line = {"ID": "L1", "ProductID": "P", "Quantity": 2, "UnitPrice": base, "Specs": [spec]}
    order = loads_exact(post_seed(oc_http, order_body("o-r", currency, LineItems=[line])).content)
    listed = get(oc_http, oc_token(), "/v1/orders/Incoming/o-r/lineitems")
    [item] = loads_exact(listed.content)["Items"]
    assert item["UnitPrice"] == expected
    assert order["Subtotal"] == order["Total"] == expected * 2


def test_line_item_lists_page_filter_and_sort_like_the_other_lists(oc_http, oc_token, seeded):
    token = oc_token("OrderReader")
    path = "/v1/orders/Incoming/o-lines/lineitems"
    page = get(oc_http, token, f"{path}?pageSize=2&page=2").json()
    assert page["Meta"] == {"Page": 2, "PageSize": 2, "TotalCount": 3, "TotalPages": 2,
                            "ItemRange": [3, 3], "NextPageKey": None}  # fmt: skip
    assert [i["ID"] for i in page["Items"]] == ["L3"]
    assert [i["ID"] for i in get(oc_http, token, f"{path}?ProductID=MUG").json()["Items"]] == ["L2"]
    by_total = get(oc_http, token, f"{path}?sortBy=!LineTotal").json()["Items"]
    assert [i["ID"] for i in by_total] == ["L1", "L2", "L3"]
    shipped_home = get(oc_http, token, f"{path}?ShippingAddressID=home").json()["Items"]
    assert [i["ID"] for i in shipped_home] == ["L1", "L2"]
    assert get(oc_http, token, f"{path}?pageSize=101").status_code == 400
    assert get(oc_http, token, f"{path}?NoSuchField=1").status_code == 400
    assert get(oc_http, token, "/v1/orders/Sideways/o-lines/lineitems").status_code == 404
    assert get(oc_http, token, "/v1/orders/Incoming/nope/lineitems").status_code == 404
    assert oc_http.get(path).status_code == 401
    assert get(oc_http, oc_token("BuyerReader"), path).status_code == 403


def test_the_worksheet_has_the_order_all_its_lines_promotions_and_ship_methods(
    oc_http, oc_token, seeded
):
    response = get(oc_http, oc_token("OrderReader"), "/v1/orders/Incoming/o-lines/worksheet")
    assert response.status_code == 200, response.text
    sheet = loads_exact(response.content)
    assert set(sheet) == SDK_WORKSHEET_FIELDS
    assert sheet["Order"] == seeded
    listed = get(oc_http, oc_token(), "/v1/orders/Incoming/o-lines/lineitems").content
    assert sheet["LineItems"] == loads_exact(listed)["Items"]
    assert [(p["ID"], p["Amount"], p["LineItemID"], p["LineItemLevel"])
            for p in sheet["OrderPromotions"]] == [
        ("TEN", D("7.05"), "L1", True), ("WELCOME", D("4.00"), None, False)]  # fmt: skip
    gift = sheet["ShipEstimateResponse"]["ShipEstimates"][1]
    assert gift["SelectedShipMethodID"] == "EXP"
    assert gift["ShipEstimateItems"] == [{"LineItemID": "L3", "Quantity": 1}]
    promotions = get(oc_http, oc_token(), "/v1/orders/Incoming/o-lines/promotions").json()
    assert [p["ID"] for p in promotions["Items"]] == ["TEN", "WELCOME"]
    worksheet = "/v1/orders/Incoming/o-lines/worksheet"
    assert get(oc_http, oc_token("BuyerReader"), worksheet).status_code == 403
    # OrderCloud has no "order details" route; the worksheet is the one-request read.
    assert get(oc_http, oc_token(), "/v1/orders/Incoming/o-lines/details").status_code == 404


def test_the_worksheet_is_not_paged(oc_http, oc_token):
    lines = [{"ID": f"L{n:03d}", "ProductID": "P", "Quantity": 1, "UnitPrice": 1}
             for n in range(150)]  # fmt: skip
    assert post_seed(oc_http, order_body("o-big", "USD", LineItems=lines)).status_code == 201
    sheet = get(oc_http, oc_token(), "/v1/orders/Incoming/o-big/worksheet").json()
    assert len(sheet["LineItems"]) == 150 and sheet["Order"]["Total"] == 150
    listed = get(oc_http, oc_token(), "/v1/orders/Incoming/o-big/lineitems?pageSize=100").json()
    assert (len(listed["Items"]), listed["Meta"]["TotalPages"]) == (100, 2)


def test_a_seed_without_line_items_is_exactly_as_before(sim, oc_http, oc_token):
    sim.set_clock("2026-06-01T10:00:00Z", frozen=True)
    body = order_body("o-plain", "USD", Subtotal=D("10.00"), Total=D("10.00"))
    order = loads_exact(post_seed(oc_http, body).content)
    assert order["LineItemCount"] == 0 and order["Total"] == D("10.00")
    assert "LineItems" not in order
    token = oc_token()
    listed = get(oc_http, token, "/v1/orders/Incoming/o-plain/lineitems").json()
    assert listed["Items"] == [] and listed["Meta"]["TotalCount"] == 0
    sheet = get(oc_http, token, "/v1/orders/Incoming/o-plain/worksheet").json()
    assert (sheet["LineItems"], sheet["OrderPromotions"], sheet["ShipEstimateResponse"]) == (
        [], [], None)  # fmt: skip
    missing_total = post_seed(oc_http, order_body("o-nototal", "USD", Subtotal=1))
    assert missing_total.status_code == 400
    assert missing_total.json()["Errors"][0] == {
        "ErrorCode": "RequiredField", "Message": "Field Total is required",
        "Data": {"Field": "Total"}}  # fmt: skip


LINE = {"ID": "L1", "ProductID": "P", "Quantity": 1, "UnitPrice": D("5.00")}


@pytest.mark.parametrize(
    ("extra", "code", "says"),
    [
        ({"LineItems": []}, "InvalidRequest", "non-empty list"),
        ({"LineItems": [{**LINE, "Quantity": 0}]}, "InvalidRequest", "LineItems[0].Quantity"),
        ({"LineItems": [{**LINE, "Quantity": True}]}, "InvalidRequest", "LineItems[0].Quantity"),
        ({"LineItems": [{k: v for k, v in LINE.items() if k != "UnitPrice"}]},
         "RequiredField", "LineItems[0].UnitPrice"),
        ({"LineItems": [{**LINE, "UnitPrice": "5.00"}]}, "InvalidRequest", "must be a number"),
        ({"LineItems": [{**LINE, "UnitPrice": D("-1")}]}, "InvalidRequest", ">= 0"),
        ({"LineItems": [{**LINE, "LineSubtotal": 5}]}, "ReadOnlyProperty", "LineSubtotal"),
        ({"LineItems": [{**LINE, "Colour": "red"}]}, "InvalidProperty", "LineItem.Colour"),
        ({"LineItems": [{**LINE, "ID": "has space"}]}, "InvalidRequest", "LineItems[0].ID"),
        ({"LineItems": [{**LINE, "Specs": [{"SpecID": "S", "PriceMarkupType": "AmountTotal",
                                            "PriceMarkup": 1}]}]},
         "InvalidRequest", "AmountTotal is not simulated"),
        ({"LineItems": [LINE], "OrderPromotions": [{"Code": "X", "Amount": 1,
                                                    "LineItemID": "L7"}]},
         "InvalidRequest", "OrderPromotions[0].LineItemID"),
        ({"LineItems": [LINE], "OrderPromotions": [{"Code": "X", "Amount": 6,
                                                    "LineItemID": "L1"}]},
         "InvalidRequest", "exceed its LineSubtotal"),
        ({"OrderPromotions": [{"Code": "X", "Amount": 1}]}, "InvalidRequest", "need LineItems"),
        ({"LineItems": [LINE], "ShipEstimateResponse": {"ShipEstimates": [
            {"SelectedShipMethodID": "NONE", "ShipMethods": []}]}},
         "InvalidRequest", "SelectedShipMethodID"),
        ({"LineItems": [LINE], "LineItemCount": 2}, "InvalidRequest", "LineItemCount"),
    ],
)  # fmt: skip
def test_bad_line_items_are_refused_naming_what_and_where(oc_http, extra, code, says):
    response = post_seed(oc_http, order_body("o-bad", "USD", **extra))
    assert response.status_code == 400, response.text
    [error] = response.json()["Errors"]
    assert error["ErrorCode"] == code
    assert says in error["Message"], error
    assert post_seed(oc_http, order_body("o-bad", "USD", LineItems=[LINE])).status_code == 201


def test_duplicate_line_ids_are_a_conflict(oc_http):
    response = post_seed(oc_http, order_body("o-dup", "USD", LineItems=[LINE, LINE]))
    assert response.status_code == 409
    assert response.json()["Errors"][0]["Data"] == {"ObjectType": "LineItem", "ObjectID": "L1"}


# --- the demo seed ---------------------------------------------------------------------------


def test_demo_orders_have_one_to_four_lines_in_five_currencies_and_add_up(sim, oc_token):
    created = seed_demo_orders(sim.ordercloud_url, count=60, seed=7)
    token = oc_token()
    seen = {"lines": set(), "discounted": 0, "two_addresses": 0, "line_promotions": 0}
    for order in created:
        response = httpx.get(
            f"{sim.ordercloud_url}/v1/orders/Incoming/{order['ID']}/worksheet",
            headers={"Authorization": f"Bearer {token}"},
        )
        sheet = loads_exact(response.content)
        lines = sheet["LineItems"]
        seen["lines"].add(len(lines))
        assert order["LineItemCount"] == len(lines)
        assert order["Subtotal"] == sum(line["LineSubtotal"] for line in lines)
        assert order["Total"] == (
            order["Subtotal"] + order["ShippingCost"] + order["TaxCost"]
            - order["PromotionDiscount"]
        )  # fmt: skip
        assert order["TaxCost"] == sum(line["xp"]["TaxCost"] for line in lines)
        for line in lines:
            assert line["LineSubtotal"] == line["UnitPrice"] * line["Quantity"]
            assert line["LineTotal"] == line["LineSubtotal"] - line["PromotionDiscount"]
            assert line["ShippingAddress"]["Country"] == order["BillingAddress"]["Country"]
        estimates = sheet["ShipEstimateResponse"]["ShipEstimates"]
        assert sorted(i["LineItemID"] for e in estimates for i in e["ShipEstimateItems"]) == (
            sorted(line["ID"] for line in lines))  # fmt: skip
        if order["Currency"] == "KWD":  # Stripe charges KWD in tens of fils
            assert (order["Total"] * 100) % 1 == 0, order["Total"]
        seen["discounted"] += order["PromotionDiscount"] > 0
        seen["line_promotions"] += any(line["PromotionDiscount"] for line in lines)
        seen["two_addresses"] += len({line["ShippingAddressID"] for line in lines}) > 1
    assert seen["lines"] == {1, 2, 3, 4}
    assert {o["Currency"] for o in created} == {"USD", "EUR", "GBP", "JPY", "KWD"}
    assert seen["discounted"] >= 5 and seen["line_promotions"] >= 3 and seen["two_addresses"] >= 5


def test_every_demo_sku_is_stocked_by_the_erp_simulator():
    skus = {GIFT_CARD.id}
    for product in CATALOG:
        skus |= {f"{product.id}-{size}" for size in product.sizes} or {product.id}
    assert skus <= set(DEFAULT_STOCK)
    seen = {line.get("Variant", {}).get("ID") or line["ProductID"]
            for order in demo_orders(200, seed=3) for line in order["LineItems"]}  # fmt: skip
    assert seen <= skus


def test_demo_orders_repeat_for_a_seed():
    def orders(seed: int) -> str:
        rng = random.Random(seed)
        return dumps_exact([demo_order(i, rng, order_id=f"X{i}") for i in range(8)])

    assert orders(5) == orders(5) != orders(6)
