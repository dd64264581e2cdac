"""``python -m stripe_sitecore.mapping preview``, run as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stripe_sitecore.mapping import mappings_dir

SAMPLES = Path(mappings_dir()) / "samples"
REPO = Path(__file__).resolve().parents[3]


def preview(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "stripe_sitecore.mapping", "preview", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_preview_prints_the_mapped_payloads_and_exits_zero():
    done = preview(
        "ordercloud_order_to_payment_intent", SAMPLES / "ordercloud_orders.json", "--no-validate"
    )
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["ok"] is True
    assert [r["outcome"] for r in output["records"]] == ["map", "map", "skip"]
    first = output["records"][0]
    assert first["key"] == "SO-1001"
    assert first["payload"]["amount"] == 4990
    assert output["records"][2]["rule"] == "rules.purchase_order"
    assert "validation" not in output


def test_preview_validates_with_great_expectations_and_fails_on_bad_records(tmp_path):
    good = json.loads((SAMPLES / "ordercloud_orders.json").read_text())[0]
    sample = tmp_path / "orders.json"
    sample.write_text(
        json.dumps(
            [
                good,
                {**good, "ID": "SO-2", "Total": 12.345},  # not exact in EUR: a mapping error
                {**good, "ID": "SO-3", "FromUser": {"ID": "u", "Email": "not-an-email"}},
            ]
        )
    )
    docs = tmp_path / "docs"
    done = preview("ordercloud_order_to_payment_intent", sample, "--data-docs", docs)
    assert done.returncode == 1, done.stderr
    output = json.loads(done.stdout)
    assert output["ok"] is False
    rejected = output["records"][1]
    assert (rejected["outcome"], rejected["rule"]) == ("reject", "money.exact_minor_units")
    assert "12.345 EUR has more decimal places" in rejected["reason"]
    validation = output["validation"]
    assert validation["payload_type"] == "payment_intent_create"
    assert validation["passed"] == ["SO-1001"]
    (failure,) = validation["failed"]["SO-3"]
    assert failure["rule"] == "validation.payment_intent_create.receipt_email_valid"
    assert failure["expectation"] == "expect_column_values_to_match_regex(receipt_email)"
    assert failure["reason"] == "receipt_email 'not-an-email' is not an email address"
    assert "1 failed" in validation["summary"]
    assert (docs / "index.html").is_file()


def test_preview_of_a_valid_batch_passes_validation():
    done = preview("stripe_payment_to_ordercloud", SAMPLES / "stripe_payment_intents.json")
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["validation"]["failed"] == {}
    assert output["records"][0]["payload"]["payment"]["Amount"] == "49.90"


def test_preview_of_a_broken_mapping_names_the_file_and_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "version: 1\nname: broken\nsource: s\ntarget: t\nfields:\n  - target: a\n    sorce: b\n"
    )
    done = preview(broken, SAMPLES / "ordercloud_orders.json")
    assert done.returncode == 2
    assert f"{broken}:7:5: fields[0]: unknown key 'sorce'" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", '"text"'])
def test_preview_refuses_samples_that_are_not_records(tmp_path, content):
    sample = tmp_path / "sample.json"
    sample.write_text(content)
    done = preview("ordercloud_order_to_payment_intent", sample, "--no-validate")
    assert done.returncode == 2
    assert done.stderr


def test_importing_mapping_and_validation_loads_neither_great_expectations_nor_pandas():
    code = (
        "import sys\n"
        "import stripe_sitecore.mapping, stripe_sitecore.mapping.__main__\n"
        "import stripe_sitecore.validation\n"
        "from stripe_sitecore.mapping import load_mapping\n"
        "load_mapping('ordercloud_order_to_payment_intent')\n"
        "heavy = {'great_expectations', 'pandas'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
