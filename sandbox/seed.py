"""Demo data: submitted OrderCloud orders from shoppers in several countries and currencies.

python -m sandbox.seed --ordercloud-url http://127.0.0.1:12112 --count 5
"""

from __future__ import annotations

import argparse
import random
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
# Orders whose total is given as is, without line items: the amounts worth seeing in a demo.
FIXED_TOTALS = {0: Decimal("129.99"), 3: Decimal("5400"), 4: Decimal("12.350")}
MINOR_UNIT = {"JPY": Decimal("1"), "KWD": Decimal("0.010")}


def _round(amount: Decimal, currency: str) -> Decimal:
    # KWD has three decimals, but Stripe can only charge it to the tens of fils.
    return amount.quantize(MINOR_UNIT.get(currency, Decimal("0.01")), ROUND_HALF_UP)


def demo_order(
    index: int,
    rng: random.Random,
    *,
    order_id: str,
    buyer_id: str = DEFAULT_BUYER,
    total: Decimal | None = None,
) -> dict:
    """One order body for the OrderCloud simulator's seed endpoint, in the market of the
    `index`-th currency of CURRENCY_CYCLE; `total` fixes the total (no shipping or tax)."""
    currency = CURRENCY_CYCLE[index % len(CURRENCY_CYCLE)]
    country, people, street, city, state, zip_code, phone, tax_rate = MARKETS[currency]
    first, last = rng.choice(people)
    user_id = f"buyer-{first.lower()}-{last.lower()}"
    email = f"{first.lower()}.{last.lower()}@example.com"
    user_phone = f"{phone}{random.Random(user_id).randint(10, 99)}"
    if total is not None:
        subtotal = total
        shipping = tax = Decimal(0)
    else:
        scale = Decimal(150) if currency == "JPY" else Decimal(1)
        subtotal = _round(Decimal(rng.randint(1999, 39999)) / 100 * scale, currency)
        shipping = _round(Decimal(rng.choice(["0", "4.99", "9.99"])) * scale, currency)
        tax = _round(subtotal * tax_rate, currency)
        total = subtotal + shipping + tax
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
        "Comments": None,
        "Currency": currency,
        "Subtotal": subtotal,
        "ShippingCost": shipping,
        "TaxCost": tax,
        "Total": total,
        "xp": {"Channel": "web"},
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
