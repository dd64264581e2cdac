"""What Great Expectations costs a task: import, first use, and a batch of 1, 100 and 2,000 rows,
with and without Data Docs; the mapping itself for comparison.

    .venv/bin/python benchmarks/gx_validation.py [--repeat 5]

Run it in a fresh process: the first figures include Python's import of GX and pandas.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

SIZES = (1, 100, 2000)


def orders(count: int) -> list[dict]:
    return [
        {
            "ID": f"SO-{i}",
            "Status": "Open",
            "Currency": "EUR",
            "Total": Decimal("49.90"),
            "FromUser": {"ID": f"u{i}", "Email": f"buyer{i}@example.com"},
            "xp": {"Channel": "web"},
            "ShippingAddress": {
                "FirstName": "Ada",
                "LastName": "Lovelace",
                "Street1": "Unter den Linden 1",
                "City": "Berlin",
                "Zip": "10117",
                "Country": "DE",
            },
        }
        for i in range(count)
    ]


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from stripe_sitecore.mapping import load_mapping
    from stripe_sitecore.validation import validate_batch

    mapping = load_mapping("ordercloud_order_to_payment_intent")
    batches = {}
    mapping_seconds = {}
    for size in SIZES:
        records = orders(size)
        mapping_seconds[size] = timed(lambda r=records: [mapping.apply(o) for o in r])
        batches[size] = [(r.key, r.payload) for r in map(mapping.apply, records)]

    import_seconds = timed(lambda: __import__("great_expectations"))
    first = timed(
        lambda: validate_batch("payment_intent_create", batches[1], build_data_docs=False)
    )
    docs = Path(tempfile.mkdtemp(prefix="gx-bench-")) / "data_docs"
    first_docs = timed(
        lambda: validate_batch("payment_intent_create", batches[1], data_docs_dir=docs)
    )

    print(f"import great_expectations (+pandas):  {import_seconds:6.2f} s")
    print(f"first validate_batch, no data docs:   {first:6.2f} s  (context + suites + 1 row)")
    print(f"first validate_batch, with data docs: {first_docs:6.2f} s  (second context, docs site)")
    print()
    print(f"median of {args.repeat} runs, warm process:")
    print(f"{'rows':>6} {'mapping':>10} {'validate':>10} {'+ data docs':>12}")
    for size in SIZES:
        plain = statistics.median(
            timed(
                lambda s=size: validate_batch(
                    "payment_intent_create", batches[s], build_data_docs=False
                )
            )
            for _ in range(args.repeat)
        )
        with_docs = statistics.median(
            timed(
                lambda s=size: validate_batch(
                    "payment_intent_create", batches[s], data_docs_dir=docs
                )
            )
            for _ in range(args.repeat)
        )
        print(f"{size:>6} {mapping_seconds[size]:>9.3f}s {plain:>9.3f}s {with_docs:>11.3f}s")


if __name__ == "__main__":
    main()
