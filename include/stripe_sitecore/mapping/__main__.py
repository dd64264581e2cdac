"""``python -m stripe_sitecore.mapping preview MAPPING SAMPLE.json``: map sample records and show
the result and its validation. Exit status 0 when every record maps (or is skipped) and passes
validation, 1 when any is rejected or fails an expectation, 2 when the mapping file or the sample
cannot be used."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import Any

from stripe_sitecore.mapping.errors import MappingError
from stripe_sitecore.mapping.loader import load_mapping


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stripe_sitecore.mapping")
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser(
        "preview", help="map sample records and validate the payloads; prints JSON"
    )
    preview.add_argument("mapping", help="mapping name (in include/mappings) or YAML file")
    preview.add_argument("sample", help="JSON file with one record or a list of records")
    preview.add_argument(
        "--no-validate", action="store_true", help="skip the Great Expectations suite (faster)"
    )
    preview.add_argument(
        "--data-docs", metavar="DIR", help="also build Great Expectations Data Docs into DIR"
    )
    return parser


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def preview(args: argparse.Namespace) -> int:
    try:
        mapping = load_mapping(args.mapping)
    except MappingError as exc:
        print(f"mapping error:\n{exc}", file=sys.stderr)
        return 2
    try:
        with open(args.sample, encoding="utf-8") as sample:
            # Money stays exact: JSON numbers with a fraction become Decimal, as in the clients.
            records = json.load(sample, parse_float=Decimal)
    except (OSError, ValueError) as exc:
        print(f"cannot read sample {args.sample}: {exc}", file=sys.stderr)
        return 2
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        print("the sample must be a JSON object or a list of objects", file=sys.stderr)
        return 2

    shown = []
    mapped: list[tuple[str, dict[str, Any]]] = []
    for index, record in enumerate(records):
        result = mapping.apply(record)
        key = result.key or f"#{index}"
        shown.append(
            {
                "key": key,
                "outcome": result.outcome,
                "rule": result.rule,
                "reason": result.reason,
                "errors": [
                    {"rule": e.rule, "reason": e.reason, "target": e.target} for e in result.errors
                ],
                "payload": result.payload,
            }
        )
        if result.outcome == "map":
            mapped.append((key, result.payload))
    ok = all(r["outcome"] != "reject" for r in shown)
    output: dict[str, Any] = {"mapping": mapping.name, "file": mapping.file, "records": shown}
    if mapping.payload_type and mapped and not args.no_validate:
        from stripe_sitecore.validation import validate_batch

        report = validate_batch(
            mapping.payload_type,
            mapped,
            build_data_docs=args.data_docs is not None,
            data_docs_dir=args.data_docs,
        )
        output["validation"] = {
            "payload_type": report.payload_type,
            "passed": report.passed,
            "failed": {
                key: [
                    {"expectation": f.expectation, "rule": f.rule, "reason": f.reason}
                    for f in failures
                ]
                for key, failures in report.failed.items()
            },
            "summary": report.summary(),
        }
        ok = ok and report.ok
    output["ok"] = ok
    json.dump(output, sys.stdout, indent=2, default=_json_default, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return preview(args)


if __name__ == "__main__":
    sys.exit(main())
