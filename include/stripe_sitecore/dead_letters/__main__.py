"""``python -m stripe_sitecore.dead_letters``: list, inspect and close dead letters.

    list [--source S] [--rule R] [--status open|resolved|superseded|all] [--since T] [--until T]
         [--key K] [--limit N] [--json]
    show ID [ID ...]
    resolve ID [ID ...] [--reopen]

The state database comes from ``--url`` or, without it, the ``stripe_sitecore_state`` Airflow
connection (the SQLite file in ``AIRFLOW_HOME`` when that is absent). Times are ISO-8601; one
without a timezone is taken as UTC. Replaying is the ``dead_letter_replay`` DAG's job.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from stripe_sitecore.store.state import DEAD_LETTER_STATUSES, DeadLetter, StateStore

REASON_WIDTH = 60


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_sitecore.dead_letters",
        description="List, inspect and close the integration's dead letters.",
    )
    parser.add_argument("--url", help="SQLAlchemy URL of the state database")
    sub = parser.add_subparsers(dest="command", required=True)

    listing = sub.add_parser("list", help="dead letters matching the filters, oldest first")
    listing.add_argument("--source", help="e.g. ordercloud.orders")
    listing.add_argument("--rule", help="the rule that failed")
    listing.add_argument(
        "--status", default="open", choices=[*DEAD_LETTER_STATUSES, "all"], help="default: open"
    )
    listing.add_argument("--since", type=_instant, help="last failed at or after this time")
    listing.add_argument("--until", type=_instant, help="last failed before this time")
    listing.add_argument("--key", action="append", dest="keys", help="record key (repeatable)")
    listing.add_argument("--limit", type=int, default=200)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    show = sub.add_parser("show", help="one dead letter in full: record, rule, reason")
    show.add_argument("ids", nargs="+", type=int)

    resolve = sub.add_parser("resolve", help="close dead letters fixed by hand")
    resolve.add_argument("ids", nargs="+", type=int)
    resolve.add_argument("--reopen", action="store_true", help="set them open again instead")
    return parser


def _jsonable(letter: DeadLetter) -> dict[str, Any]:
    data = asdict(letter)
    data["first_seen"] = letter.first_seen.isoformat()
    data["last_seen"] = letter.last_seen.isoformat()
    return data


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(letters: list[DeadLetter]) -> str:
    header = ("ID", "STATUS", "SOURCE", "KEY", "RULE", "TRIES", "LAST SEEN", "REASON")
    rows = [header] + [
        (
            str(d.id),
            d.status,
            d.source,
            d.record_key,
            d.rule,
            str(d.attempts),
            d.last_seen.strftime("%Y-%m-%d %H:%M:%SZ"),
            _one_line(d.reason, REASON_WIDTH),
        )
        for d in letters
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    # The reason goes last and unpadded: it is the one long column.
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    )


def _show(letter: DeadLetter) -> str:
    return "\n".join(
        [
            f"Dead letter {letter.id} ({letter.status})",
            f"  source:     {letter.source}",
            f"  record key: {letter.record_key}",
            f"  rule:       {letter.rule}",
            f"  reason:     {letter.reason}",
            f"  first seen: {letter.first_seen.isoformat()}",
            f"  last seen:  {letter.last_seen.isoformat()}",
            f"  attempts:   {letter.attempts}",
            "  record:",
            json.dumps(letter.record, indent=2, sort_keys=True, default=str),
        ]
    )


def _store(url: str | None) -> StateStore:
    if url is None:
        from stripe_sitecore.hooks.state import StateStoreHook

        url = StateStoreHook().sqlalchemy_url()
    return StateStore.from_url(url)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store = _store(args.url)
    try:
        with store.begin() as tx:
            if args.command == "list":
                letters = tx.list_dead_letters(
                    source=args.source,
                    rule=args.rule,
                    status=None if args.status == "all" else args.status,
                    since=args.since,
                    until=args.until,
                    record_keys=args.keys,
                    limit=args.limit,
                )
                if args.json:
                    for letter in letters:
                        print(json.dumps(_jsonable(letter), default=str))
                elif letters:
                    print(_table(letters))
                else:
                    print("no dead letters match", file=sys.stderr)
                return 0
            found = {i: tx.get_dead_letter(i) for i in args.ids}
            missing = sorted(i for i, letter in found.items() if letter is None)
            if missing:
                print(f"no dead letter with id {', '.join(map(str, missing))}", file=sys.stderr)
                return 1
            if args.command == "show":
                print("\n\n".join(_show(letter) for letter in found.values()))
                return 0
            status = "open" if args.reopen else "resolved"
            count = tx.set_dead_letter_status(args.ids, status)
            print(f"{count} dead letter(s) set {status}")
            return 0
    finally:
        store.dispose()


if __name__ == "__main__":
    sys.exit(main())
