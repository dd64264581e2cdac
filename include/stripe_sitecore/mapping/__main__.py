"""``python -m stripe_sitecore.mapping preview MAPPING SAMPLE.json``: map sample records and show
the result and its validation. Exit status 0 when every record maps (or is skipped) and passes
validation, 1 when any is rejected or fails an expectation, 2 when the mapping file or the sample
cannot be used.

``python -m stripe_sitecore.mapping suggest SOURCE.json TARGET.json``: for each field of the
target sample, the source paths that could fill it, ranked, with scores and reasons (JSON).
``--mapping NAME`` leaves out the targets that mapping already maps. Exit status 0, or 2 when a
sample or the mapping cannot be used."""

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
    suggest = commands.add_parser(
        "suggest",
        help="rank source paths for each target field of two sample payloads; prints JSON",
    )
    suggest.add_argument("source", help="JSON file: a source record (or a list: the first one)")
    suggest.add_argument("target", help="JSON file: a target payload (or a list: the first one)")
    suggest.add_argument(
        "--mapping",
        help="mapping name or YAML file: only suggest for the targets it leaves unmapped",
    )
    suggest.add_argument("--limit", type=int, default=3, help="candidates per target (default 3)")
    suggest.add_argument(
        "--method",
        choices=("names", "patterns", "combined"),
        default="combined",
        help="names only, value patterns and types only, or both (default)",
    )
    suggest.add_argument(
        "--memory", metavar="FILE", help="accepted/rejected pairs to rank by (the studio's file)"
    )
    return parser


def _read_sample(path: str) -> dict[str, Any]:
    """One record from a JSON file (the first of a list), money as Decimal; ValueError says why."""
    try:
        with open(path, encoding="utf-8") as sample:
            data = json.load(sample, parse_float=Decimal)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object or a list of objects")
    return data


def suggest(args: argparse.Namespace) -> int:
    from stripe_sitecore.mapping.suggest import SuggestionMemory
    from stripe_sitecore.mapping.suggest import suggest as rank

    try:
        source = _read_sample(args.source)
        target = _read_sample(args.target)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.limit < 1:
        print("--limit must be at least 1", file=sys.stderr)
        return 2
    mapped: list[str] = []
    source_kind = target_kind = None
    if args.mapping:
        try:
            mapping = load_mapping(args.mapping)
        except MappingError as exc:
            print(f"mapping error:\n{exc}", file=sys.stderr)
            return 2
        mapped = mapped_targets(mapping)
        source_kind, target_kind = mapping.source, mapping.target
    memory = SuggestionMemory(args.memory) if args.memory else None
    results = rank(
        source,
        target,
        mapped_targets=mapped,
        memory=memory,
        source_kind=source_kind,
        target_kind=target_kind,
        limit=args.limit,
        method=args.method,
    )
    output = {
        "source": args.source,
        "target": args.target,
        "method": args.method,
        "skipped_mapped_targets": sorted(mapped),
        "suggestions": [r.as_json() for r in results],
    }
    json.dump(output, sys.stdout, indent=2, default=_json_default, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def mapped_targets(mapping: Any) -> list[str]:
    """Every target a mapping writes: its fields' and its map rules' (never suggested over)."""
    targets = {f.target for f in mapping.fields}
    for rule in mapping.rules:
        targets.update(f.target for f in rule.fields)
    return sorted(targets)


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
    if args.command == "suggest":
        return suggest(args)
    return preview(args)


if __name__ == "__main__":
    sys.exit(main())
