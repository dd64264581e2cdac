"""How well the mapping suggester ranks the right source path, and how long a suggestion takes.

    .venv/bin/python benchmarks/mapping_suggest.py [--repeat 3] [--misses]

Two sets of field pairs (benchmarks/data/README.md):

- **tuning**: the fields of the shipped mappings (include/mappings/*.yaml) that read one source
  path, on their sample records, the target values made by the mapping engine. The weights and
  the vocabulary may be adjusted on this set.
- **held-out**: ``benchmarks/data/heldout_pairs.json``, pairs between Stripe's, OrderCloud's and
  XC's published example objects; no (source, target) pair of it is in the tuning set (checked
  here), and the suggester was never adjusted to it.

For each pair the suggester ranks every leaf of the source object for the target field; a pair is
a top-k hit when an acceptable source path is among the first k. Printed as JSON: top-1 and top-3
per method (names only, patterns and types only, combined), the held-out pairs whose field names
also appear in the tuning set counted apart, and the time per suggestion (one target field ranked
against all source fields) and per whole record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from stripe_sitecore.mapping import MappingError, load_mapping, mappings_dir
from stripe_sitecore.mapping.suggest import (
    METHODS,
    concepts,
    flatten,
    sample_files,
    suggest,
)

DATA = Path(__file__).resolve().parent / "data"
SKIPPED: list[str] = []


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


def leaf_key(path: str) -> tuple[str, ...]:
    last = path.replace("]", "").split(".")[-1].split("[")[0]
    return tuple(concepts(last))


def _field_sources(spec: dict[str, Any]) -> list[str] | None:
    if "source" in spec:
        return [spec["source"]]
    if "first_of" in spec:
        return list(spec["first_of"])
    return None


def tuning_pairs() -> list[dict[str, Any]]:
    """(record, payload, target, acceptable sources) from every shipped mapping and sample."""
    pairs, seen = [], set()
    for path in sorted(mappings_dir().glob("*.yaml")):
        if path.stem.endswith("_rules"):
            continue
        try:
            spec = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
            mapping = load_mapping(path)
        except (MappingError, YAMLError) as exc:
            # A file being edited may not load: the others still make the tuning set.
            print(f"tuning set: {path.name} skipped: {str(exc).splitlines()[0]}", file=sys.stderr)
            SKIPPED.append(path.name)
            continue
        fields = [*spec.get("fields", [])]
        for rule in spec.get("rules", []):
            fields.extend(rule.get("fields", []))
        for sample in sample_files(mapping.source, mappings_dir() / "samples"):
            records = read_json(sample)
            for record in records if isinstance(records, list) else [records]:
                payload = mapping.apply(record).payload
                leaves = {leaf.path for leaf in flatten(record)}
                targets = {leaf.path for leaf in flatten(payload)}
                for field in fields:
                    sources = _field_sources(field)
                    if not sources or "each" in field or field["target"] not in targets:
                        continue
                    sources = [s for s in sources if s in leaves]
                    key = (mapping.name, field["target"], tuple(sources))
                    if not sources or key in seen:
                        continue
                    seen.add(key)
                    pairs.append(
                        {
                            "scenario": mapping.name,
                            "record": record,
                            "payload": payload,
                            "target": field["target"],
                            "sources": sources,
                        }
                    )
    return pairs


def heldout_pairs() -> list[dict[str, Any]]:
    data = read_json(DATA / "heldout_pairs.json")
    pairs = []
    for scenario in data["scenarios"]:
        record = read_json(DATA / scenario["source"])
        payload = read_json(DATA / scenario["target"])
        leaves = {leaf.path for leaf in flatten(record)}
        for pair in scenario["pairs"]:
            missing = [s for s in pair["source"] if s not in leaves]
            if missing:
                sys.exit(f"{scenario['id']}: {missing} are not fields of {scenario['source']}")
            pairs.append(
                {
                    "scenario": scenario["id"],
                    "record": record,
                    "payload": payload,
                    "target": pair["target"],
                    "sources": pair["source"],
                }
            )
    return pairs


def evaluate(pairs: list[dict[str, Any]], method: str) -> dict[str, Any]:
    top1 = top3 = 0
    misses = []
    for pair in pairs:
        [result] = suggest(
            pair["record"], pair["payload"], targets=[pair["target"]], limit=3, method=method,
            min_score=0.0,
        )  # fmt: skip
        ranked = [c.source for c in result.candidates]
        if ranked[:1] and ranked[0] in pair["sources"]:
            top1 += 1
        if any(s in pair["sources"] for s in ranked[:3]):
            top3 += 1
        else:
            misses.append(
                {
                    "scenario": pair["scenario"],
                    "target": pair["target"],
                    "want": pair["sources"],
                    "got": ranked,
                }  # fmt: skip
            )
    n = len(pairs) or 1
    return {
        "pairs": len(pairs),
        "top1": round(top1 / n, 3),
        "top3": round(top3 / n, 3),
        "misses": misses,
    }


def timing(pairs: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    per_target, per_record, candidates = [], [], []
    records = {id(p["record"]): p for p in pairs}.values()
    for _ in range(repeat):
        for pair in pairs:
            started = time.perf_counter()
            suggest(pair["record"], pair["payload"], targets=[pair["target"]], min_score=0.0)
            per_target.append(time.perf_counter() - started)
        for pair in records:
            leaves = flatten(pair["payload"])
            started = time.perf_counter()
            suggest(pair["record"], pair["payload"], min_score=0.0)
            per_record.append((time.perf_counter() - started) / max(len(leaves), 1))
            candidates.append(len(flatten(pair["record"])))
    ms = sorted(t * 1000 for t in per_target)
    return {
        "ms_per_suggestion_median": round(statistics.median(ms), 3),
        "ms_per_suggestion_p95": round(ms[int(0.95 * (len(ms) - 1))], 3),
        "ms_per_target_in_whole_record_median": round(
            statistics.median(t * 1000 for t in per_record), 3
        ),
        "source_fields_per_record_mean": round(statistics.mean(candidates), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions")
    parser.add_argument("--misses", action="store_true", help="list the top-3 misses")
    args = parser.parse_args()

    tuning = tuning_pairs()
    heldout = heldout_pairs()
    tuned_on = {(p["target"], s) for p in tuning for s in p["sources"]}
    overlap = [p for p in heldout if any((p["target"], s) in tuned_on for s in p["sources"])]
    if overlap:
        sys.exit(
            "held-out pairs also in the tuning set: "
            + ", ".join(f"{p['target']} <- {p['sources']}" for p in overlap)
        )
    seen_names = {(leaf_key(p["target"]), leaf_key(s)) for p in tuning for s in p["sources"]}
    novel = [
        p for p in heldout if not any((leaf_key(p["target"]), leaf_key(s)) in seen_names
                                      for s in p["sources"])
    ]  # fmt: skip

    report: dict[str, Any] = {
        "methods": {},
        "embeddings": "none: no model is shipped (docs/studio.md)",
    }
    for method in METHODS:
        entry = {
            "tuning": evaluate(tuning, method),
            "heldout": evaluate(heldout, method),
            "heldout_novel_names": evaluate(novel, method),
        }
        if not args.misses:
            for part in entry.values():
                part.pop("misses")
        report["methods"][method] = entry
    report["timing"] = timing(heldout, args.repeat)
    report["scenarios"] = sorted({p["scenario"] for p in heldout})
    report["tuning_files_skipped"] = SKIPPED
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
