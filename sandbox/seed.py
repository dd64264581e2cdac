"""Demo data: submitted OrderCloud orders from shoppers in several countries and currencies, each
with line items (products, variants, specs with price markups, promotions, ship methods, now and
then a second shipping address).

python -m sandbox.seed --ordercloud-url http://127.0.0.1:12112 --count 5
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import httpx

from sandbox.common import dumps_exact, loads_exact
from sandbox.ordercloud_sim import DEFAULT_BUYER

# currency: (country, locale-typical shoppers, street, city, state, zip, phone prefix, tax rate)
MARKETS = {
    "USD": ("US", [("Avery", "Johnson"), ("Marcus", "Reed")], "500 Congress Ave", "Austin",
            "TX", "78701", "+1 512 555 01", Decimal("0.0825")),
    "EUR": ("DE", [("Lena", "Schmidt"), ("Jonas", "Weber")], "Invalidenstraße 12", "Berlin",
            "BE", "10115", "+49 30 5550 1", Decimal("0.19")),
    "GBP": ("GB", [("Oliver", "Bennett"), ("Amelia", "Clarke")], "14 Piccadilly", "Manchester",
            None, "M1 1AE", "+44 161 555 01", Decimal("0.20")),
    "JPY": ("JP", [("Yuki", "Tanaka"), ("Haruto", "Sato")], "1-1 Marunouchi", "Chiyoda-ku",
            "Tokyo", "100-0005", "+81 3 5555 01", Decimal("0.10")),
    "KWD": ("KW", [("Fatima", "Alsabah"), ("Yousef", "Alenezi")], "Gulf Road, Block 5",
            "Kuwait City", None, "13001", "+965 5555 01", Decimal("0")),
}  # fmt: skip
CURRENCY_CYCLE = ("USD", "EUR", "GBP", "JPY", "KWD")
# Orders whose total is given as is, without shipping, tax or discounts: the amounts worth seeing
# in a demo. Their line items add up to exactly that total.
FIXED_TOTALS = {0: Decimal("129.99"), 3: Decimal("5400"), 4: Decimal("12.350")}
MINOR_UNIT = {"JPY": Decimal("1"), "KWD": Decimal("0.010")}
# ISO 4217 decimals: what OrderCloud rounds a percentage spec markup to.
ISO_QUANTUM = {"JPY": Decimal("1"), "KWD": Decimal("0.001")}
# Prices are set in USD and converted once per market, rounded to what the market can pay.
PRICE_FACTOR = {
    "USD": Decimal("1"),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.80"),
    "JPY": Decimal("150"),
    "KWD": Decimal("0.31"),
}


@dataclass(frozen=True)
class DemoProduct:
    """A product of the demo shop. `sizes` make variants (the SKU is the variant's ID);
    `markup` is a spec with a price markup (AmountPerQuantity in USD, or Percentage)."""

    id: str
    name: str
    usd_price: Decimal | None  # None: the price is whatever the line needs (a gift card)
    colors: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    markup: tuple[str, str, str, Decimal] | None = None  # spec, value, type, amount


# The ERP simulator's default stock (sandbox/erp_sim.py DEFAULT_STOCK) knows every SKU here, with
# some plentiful, LAMP-DESK and TEE-ORGANIC-XL low, SPEAKER-MINI out of stock and CAMERA-FILM
# discontinued, so the demo shows every reservation outcome.
CATALOG = (
    DemoProduct("MUG-CLASSIC", "Classic mug", Decimal("12.50"), colors=("White", "Black")),
    DemoProduct(
        "TEE-ORGANIC",
        "Organic T-shirt",
        Decimal("24.00"),
        sizes=("S", "M", "L", "XL"),
        markup=("Size", "XL", "AmountPerQuantity", Decimal("2.00")),
    ),
    DemoProduct("BAG-TOTE", "Canvas tote bag", Decimal("18.00")),
    DemoProduct(
        "BOTTLE-STEEL",
        "Steel bottle",
        Decimal("29.90"),
        markup=("Engraving", "Initials", "Percentage", Decimal("10")),
    ),
    DemoProduct("NOTEBOOK-A5", "A5 notebook", Decimal("6.50")),
    DemoProduct("LAMP-DESK", "Desk lamp", Decimal("79.00")),
    DemoProduct("SPEAKER-MINI", "Mini speaker", Decimal("59.00")),
    DemoProduct("CAMERA-FILM", "Film camera", Decimal("149.00")),
)
GIFT_CARD = DemoProduct("GIFT-CARD", "Gift card", None)
ORDER_PROMOTION = {"USD": "5.00", "EUR": "5.00", "GBP": "4.00", "JPY": "700", "KWD": "1.500"}
# Recipients of the lines some shoppers send elsewhere (a second shipping address).
GIFT_RECIPIENTS = {
    "USD": ("Jordan", "Lee", "2100 Guadalupe St"),
    "EUR": ("Mia", "Fischer", "Torstraße 101"),
    "GBP": ("Harry", "Wilson", "3 Deansgate"),
    "JPY": ("Sakura", "Ito", "2-7-2 Marunouchi"),
    "KWD": ("Noura", "Alrashid", "Salem Al Mubarak St"),
}


def _round(amount: Decimal, currency: str) -> Decimal:
    """Half up to the market's step. KWD has three decimals, but Stripe can only charge it to the
    tens of fils, so KWD amounts are whole multiples of 0.010 (written with three decimals)."""
    step = MINOR_UNIT.get(currency, Decimal("0.01"))
    return (amount / step).quantize(Decimal(1), ROUND_HALF_UP) * step


def _price(usd: Decimal, currency: str) -> Decimal:
    return _round(usd * PRICE_FACTOR[currency], currency)


def _line(
    product: DemoProduct,
    rng: random.Random,
    *,
    line_id: str,
    currency: str,
    quantity: int,
    unit_price: Decimal | None = None,
) -> tuple[dict, Decimal]:
    """A LineItem body for the seed route and its LineSubtotal as OrderCloud will compute it."""
    base = unit_price if unit_price is not None else _price(product.usd_price, currency)
    line: dict = {
        "ID": line_id,
        "ProductID": product.id,
        "Quantity": quantity,
        "UnitPrice": base,
        "Product": {"ID": product.id, "Name": product.name, "QuantityMultiplier": 1},
    }
    specs, price = [], base
    if product.colors:
        color = rng.choice(product.colors)
        specs.append({"SpecID": "Color", "Name": "Color", "OptionID": color, "Value": color})
    if product.sizes:
        size = rng.choice(product.sizes)
        line["Variant"] = {"ID": f"{product.id}-{size}", "Name": f"{product.name}, {size}"}
        specs.append({"SpecID": "Size", "Name": "Size", "OptionID": size, "Value": size})
    if product.markup is not None:
        spec_id, value, kind, amount = product.markup
        chosen = specs[-1]["OptionID"] == value if spec_id == "Size" else rng.randrange(2) == 0
        if chosen:
            if kind == "Percentage" and currency != "KWD":
                # OrderCloud rounds the markup to the currency's decimals.
                quantum = ISO_QUANTUM.get(currency, Decimal("0.01"))
                price += (base * amount / 100).quantize(quantum, ROUND_HALF_UP)
            else:
                # KWD prices stay in tens of fils (Stripe's rule): a per-unit markup instead.
                kind = "AmountPerQuantity"
                amount = _price(amount if spec_id == "Size" else Decimal("3.00"), currency)
                price += amount
            markup = {"PriceMarkupType": kind, "PriceMarkup": amount}
            if spec_id == "Size":
                specs[-1].update(markup)
            else:
                specs.append({"SpecID": spec_id, "Name": spec_id, "Value": value, **markup})
    if specs:
        line["Specs"] = specs
    return line, price * quantity


# How often each product is bought, so that the out-of-stock and discontinued ones (which the
# ERP backorders or rejects) show up now and then, not in every other order.
POPULARITY = {"MUG-CLASSIC": 6, "TEE-ORGANIC": 6, "BAG-TOTE": 5, "BOTTLE-STEEL": 4,
              "NOTEBOOK-A5": 6, "LAMP-DESK": 2, "SPEAKER-MINI": 1, "CAMERA-FILM": 1}  # fmt: skip


def _pick_products(rng: random.Random, count: int) -> list[DemoProduct]:
    products: list[DemoProduct] = []
    while len(products) < count:
        product = rng.choices(CATALOG, weights=[POPULARITY[p.id] for p in CATALOG])[0]
        if product not in products:
            products.append(product)
    return products


def _address(user_id: str, first: str, last: str, street: str, market: tuple, name: str) -> dict:
    country, _, _, city, state, zip_code, phone, _ = market
    return {
        "ID": f"{user_id}-{name.lower()}",
        "FirstName": first,
        "LastName": last,
        "CompanyName": None,
        "Street1": street,
        "Street2": None,
        "City": city,
        "State": state,
        "Zip": zip_code,
        "Country": country,
        "Phone": f"{phone}{random.Random(user_id + name).randint(10, 99)}",
        "AddressName": name,
    }


def demo_order(
    index: int,
    rng: random.Random,
    *,
    order_id: str,
    buyer_id: str = DEFAULT_BUYER,
    total: Decimal | None = None,
) -> dict:
    """One order body for the OrderCloud simulator's seed endpoint, in the market of the
    `index`-th currency of CURRENCY_CYCLE, with 1-4 line items, ship methods, per-line tax (in
    each line's `xp.TaxCost`), sometimes promotions and sometimes a line shipped to a second
    address. `total` fixes the total: its lines add up to it, with no shipping, tax or discount.
    The simulator computes Subtotal, ShippingCost, PromotionDiscount and Total from the lines."""
    currency = CURRENCY_CYCLE[index % len(CURRENCY_CYCLE)]
    market = MARKETS[currency]
    country, people, street, city, state, zip_code, phone, tax_rate = market
    first, last = rng.choice(people)
    user_id = f"buyer-{first.lower()}-{last.lower()}"
    email = f"{first.lower()}.{last.lower()}@example.com"
    user_phone = f"{phone}{random.Random(user_id).randint(10, 99)}"
    address = {
        "ID": f"{user_id}-billing",
        "FirstName": first,
        "LastName": last,
        "CompanyName": None,
        "Street1": street,
        "Street2": None,
        "City": city,
        "State": state,
        "Zip": zip_code,
        "Country": country,
        "Phone": user_phone,
        "AddressName": "Home",
    }
    home = {**address, "ID": f"{user_id}-shipping"}
    scale = Decimal(150) if currency == "JPY" else Decimal(1)

    lines: list[dict] = []
    subtotals: list[Decimal] = []
    if total is not None:
        # Half the total or less for the first line leaves the gift card a positive price.
        affordable = [p for p in CATALOG if _price(p.usd_price, currency) * 2 <= total]
        line, subtotal = _line(rng.choice(affordable), rng, line_id="L1", currency=currency,
                               quantity=1)  # fmt: skip
        gift, rest = _line(
            GIFT_CARD, rng, line_id="L2", currency=currency, quantity=1, unit_price=total - subtotal
        )
        lines, subtotals = [line, gift], [subtotal, rest]
        shipping = Decimal(0)
    else:
        for number, product in enumerate(_pick_products(rng, rng.randint(1, 4)), start=1):
            line, subtotal = _line(
                product, rng, line_id=f"L{number}", currency=currency, quantity=rng.randint(1, 3)
            )
            lines.append(line)
            subtotals.append(subtotal)
        shipping = _round(Decimal(rng.choice(["0", "4.99", "9.99"])) * scale, currency)
    for line in lines:
        line["ShippingAddress"] = home
    if total is None and len(lines) > 1 and rng.randrange(4) == 0:
        gift_first, gift_last, gift_street = GIFT_RECIPIENTS[currency]
        lines[-1]["ShippingAddress"] = _address(
            user_id, gift_first, gift_last, gift_street, market, "Gift"
        )

    promotions = []
    # The first orders of a run (the five `make run` seeds) carry no promotion, so that their
    # totals read as subtotal + shipping + tax; promotions start with the next ones.
    promoted = total is None and index >= len(CURRENCY_CYCLE)
    if promoted and rng.randrange(4) == 0:
        # Ten percent off the most expensive line.
        best = max(range(len(lines)), key=lambda i: subtotals[i])
        amount = _round(subtotals[best] / 10, currency)
        promotions.append({"ID": "TEN-OFF", "Code": "TENOFF", "Name": "10% off one item",
                           "Amount": amount, "LineItemID": lines[best]["ID"]})  # fmt: skip
    order_promo = Decimal(ORDER_PROMOTION[currency])
    if promoted and rng.randrange(5) == 0 and sum(subtotals) > 2 * order_promo:
        promotions.append({"ID": "WELCOME", "Code": "WELCOME", "Name": "Welcome discount",
                           "Amount": order_promo})  # fmt: skip
    line_discount = {p["LineItemID"]: p["Amount"] for p in promotions if p.get("LineItemID")}
    for line, subtotal in zip(lines, subtotals, strict=True):
        line_total = subtotal - line_discount.get(line["ID"], Decimal(0))
        line["xp"] = {"TaxCost": _round(line_total * tax_rate, currency) if total is None else 0}

    estimates = []
    for address_id in dict.fromkeys(line["ShippingAddress"]["ID"] for line in lines):
        express = rng.randrange(6) == 0 and total is None
        estimates.append(
            {
                "ID": f"ship-{address_id}",
                "SelectedShipMethodID": "EXPRESS" if express else "STANDARD",
                "ShipMethods": [
                    {"ID": "STANDARD", "Name": "Standard", "Cost": shipping,
                     "EstimatedTransitDays": 4},
                    {"ID": "EXPRESS", "Name": "Express",
                     "Cost": shipping + _round(Decimal(10) * scale, currency),
                     "EstimatedTransitDays": 1},
                ],
                "ShipEstimateItems": [
                    {"LineItemID": line["ID"], "Quantity": line["Quantity"]}
                    for line in lines
                    if line["ShippingAddress"]["ID"] == address_id
                ],
            }
        )  # fmt: skip
    return {
        "ID": order_id,
        "FromCompanyID": buyer_id,
        "FromUser": {
            "ID": user_id,
            "CompanyID": buyer_id,
            "Username": email,
            "FirstName": first,
            "LastName": last,
            "Email": email,
            "Phone": user_phone,
        },
        "BillingAddress": address,
        "ShippingAddressID": home["ID"],
        "Comments": None,
        "Currency": currency,
        # What a tax integration would have written: the lines' taxes added up.
        "TaxCost": sum((line["xp"]["TaxCost"] for line in lines), Decimal(0)),
        "xp": {"Channel": "web"},
        "LineItems": lines,
        "OrderPromotions": promotions,
        "ShipEstimateResponse": {"ShipEstimates": estimates},
    }


def demo_orders(count: int = 5, seed: int = 42, buyer_id: str = DEFAULT_BUYER) -> list[dict]:
    """Order bodies for the OrderCloud simulator's seed endpoint, the same for the same seed."""
    rng = random.Random(seed)
    return [
        demo_order(
            index,
            rng,
            order_id=f"SBX{seed}-{index + 1:04d}",
            buyer_id=buyer_id,
            total=FIXED_TOTALS.get(index),
        )
        for index in range(count)
    ]


def buyer_user(order: dict) -> dict:
    """The order's shopper as a buyer user body."""
    user = {k: v for k, v in order["FromUser"].items() if k != "CompanyID"}
    user["Active"] = True
    return user


def seed_demo_orders(
    ordercloud_url: str, count: int = 5, seed: int = 42, *, buyer_id: str = DEFAULT_BUYER
) -> list[dict]:
    """POST `demo_orders(count, seed)` (and their shoppers as buyer users) to the simulator.

    Returns the orders created; ones already there (same seed seeded before) are skipped.
    """
    created = []
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=ordercloud_url, headers=headers, timeout=10) as client:
        for order in demo_orders(count, seed, buyer_id):
            response = client.post(
                f"/_sandbox/buyers/{buyer_id}/users", content=dumps_exact(buyer_user(order))
            )
            if response.status_code != 409:
                response.raise_for_status()
            response = client.post("/_sandbox/orders", content=dumps_exact(order))
            if response.status_code == 409:
                continue
            response.raise_for_status()
            created.append(loads_exact(response.content))
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.seed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--ordercloud-url", default="http://127.0.0.1:12112")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--buyer-id", default=DEFAULT_BUYER)
    args = parser.parse_args(argv)
    created = seed_demo_orders(args.ordercloud_url, args.count, args.seed, buyer_id=args.buyer_id)
    for order in created:
        print(f"{order['ID']}  {order['Total']} {order['Currency']}  {order['FromUser']['Email']}")
    skipped = args.count - len(created)
    print(f"created {len(created)} orders" + (f", {skipped} already there" if skipped else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
