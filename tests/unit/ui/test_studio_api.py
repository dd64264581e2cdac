"""The mapping studio's HTTP API (FastAPI TestClient): a copy of include/mappings in tmp_path, a
migrated SQLite state DB, and an injected authorizer that records which DAG and method was asked.

Great Expectations runs for real in the preview tests (the same suite the DAGs use); the other
tests turn validation off to stay fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import HTTPException
from fastapi.testclient import TestClient

from stripe_sitecore.store import StateStore, models
from stripe_sitecore.store.state import utcnow
from stripe_sitecore.ui.app import create_app
from stripe_sitecore.ui.studio import StudioSettings

REPO = Path(__file__).resolve().parents[3]
PI = "ordercloud_order_to_payment_intent"
API = f"/studio/api/mappings/{PI}"
SAMPLE = {"kind": "sample", "file": "ordercloud_orders.json", "index": 0}


class Auth:
    """Lets in everyone except for ``(dag_id, method)`` in ``refuse``; remembers the questions."""

    def __init__(self, refuse=()):
        self.refuse, self.asked = set(refuse), []

    async def __call__(self, request, dag_id, method="GET"):
        self.asked.append((dag_id, method))
        if (dag_id, method) in self.refuse:
            raise HTTPException(403, f"no access to DAG {dag_id}")
        return {"username": "fake"}


@pytest.fixture
def mappings(tmp_path):
    folder = tmp_path / "mappings"
    shutil.copytree(REPO / "include" / "mappings", folder)
    return folder


@pytest.fixture
def store(tmp_path):
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    yield store
    store.dispose()


def make(mappings, store, tmp_path, *, write=True, validate=False, auth=None):
    settings = StudioSettings(
        mappings_dir=lambda: mappings,
        write_enabled=lambda: write,
        memory_path=lambda: tmp_path / "memory.json",
        validate=validate,
    )
    auth = auth or Auth()

    async def page_auth(request, dag_id):
        return await auth(request, dag_id, "GET")

    app = create_app(
        lambda: store,
        lambda: {},
        authorize=page_auth,
        login_url=lambda next_url: None,
        studio=settings,
        studio_authorize=auth,
    )
    return TestClient(app), auth


@pytest.fixture
def client(mappings, store, tmp_path):
    return make(mappings, store, tmp_path)[0]


def loaded(client):
    response = client.get(API)
    assert response.status_code == 200, response.text
    return response.json()


def plant_dead_letter(store, record, source="ordercloud.orders", status="open"):
    now = utcnow()
    with store.engine.begin() as conn:
        return conn.execute(
            sa.insert(models.dead_letters).values(
                source=source, record_key=record["ID"], record=record, rule="money.x",
                reason="fake reason", first_seen=now, last_seen=now, attempts=1, status=status,
            )
        ).inserted_primary_key[0]  # fmt: skip


# --- permissions --------------------------------------------------------------------------


def test_reading_needs_the_mapping_dags_read_access_and_saving_its_edit_access(
    mappings, store, tmp_path
):
    refuse_read = Auth(refuse={("sitecore_orders_to_stripe", "GET")})
    client, _ = make(mappings, store, tmp_path, auth=refuse_read)
    assert client.get(API).status_code == 403
    assert client.post(f"{API}/preview", json={"yaml": "", "record": SAMPLE}).status_code == 403
    # The studio's list leaves out the mappings of DAGs the user cannot read.
    listing = client.get("/studio")
    assert PI not in listing.text and "stripe_payment_to_ordercloud" in listing.text

    refuse_edit = Auth(refuse={("sitecore_orders_to_stripe", "PUT")})
    client, auth = make(mappings, store, tmp_path, auth=refuse_edit)
    meta = loaded(client)
    assert meta["can_edit"] is False
    saved = client.post(f"{API}/save", json={"yaml": meta["yaml"], "base_sha": meta["sha"]})
    assert saved.status_code == 403
    assert ("sitecore_orders_to_stripe", "PUT") in auth.asked
    feedback = client.post(
        f"{API}/feedback", json={"verdict": "accepted", "source": "ID", "target": "x"}
    )
    assert feedback.status_code == 403
    # Each mapping is governed by the DAG that runs it.
    client, auth = make(mappings, store, tmp_path)
    client.get("/studio/api/mappings/ordercloud_order_to_erp")
    assert ("paid_orders_to_erp", "GET") in auth.asked


def test_the_airflow_authorizer_refuses_a_request_without_a_login(mappings, store, tmp_path):
    app = create_app(lambda: store, lambda: {}, login_url=lambda next_url: None)
    response = TestClient(app).get(API)
    assert response.status_code == 401
    page = TestClient(app).get(f"/studio/m/{PI}")
    assert page.status_code == 401


def test_unknown_or_malformed_mapping_names_are_404(client):
    assert client.get("/studio/api/mappings/no_such_mapping").status_code == 404
    assert client.get("/studio/api/mappings/..%2Fsecret").status_code in (404, 400)
    assert client.get("/studio/m/Not-A-Name").status_code == 404


# --- the page and the mapping -------------------------------------------------------------


def test_the_editor_page_loads_its_script_under_a_csp_that_allows_only_this_app(client):
    page = client.get(f"/studio/m/{PI}")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert '<script src="/studio/static/studio.js">' in page.text
    script = client.get("/studio/static/studio.js")
    assert script.status_code == 200 and "add_field" in script.text
    assert client.get("/studio/static/../studio.py").status_code == 404


def test_the_mapping_comes_with_its_lines_records_and_replay_facts(client, store):
    plant_dead_letter(store, {"ID": "SO-DL-1", "Status": "Open", "Currency": "EUR", "Total": "1"})
    meta = loaded(client)
    fields = {f["target"]: f for f in meta["view"]["fields"]}
    amount_line = meta["yaml"].splitlines().index("  - target: amount") + 1
    assert fields["amount"]["line"] == amount_line
    assert fields["amount"]["from"] == "Total"
    assert fields["amount"]["transform"] == "money.to_minor_units"
    assert fields["amount"]["args"] == "{currency: {path: Currency}}"
    assert [r["name"] for r in meta["view"]["rules"]][:2] == ["purchase_order", "not_payable"]
    assert meta["records"]["samples"][0]["ref"] == SAMPLE
    assert [d["label"].split(":")[0] for d in meta["records"]["dead_letters"]] == ["#1 SO-DL-1"]
    assert meta["dead_letters"] == {
        "source": "ordercloud.orders",
        "open": 1,
        "readable": True,
        "replayable": True,
        "dag_id": "dead_letter_replay",
        "trigger_url": "/api/v2/dags/dead_letter_replay/dagRuns",
        "dag_url": "/dags/dead_letter_replay",
        "conf": {"source": "ordercloud.orders"},
    }
    assert meta["problems"] == []


# --- preview ------------------------------------------------------------------------------


def test_preview_maps_the_sample_with_the_engine_and_validates_with_the_gx_suite(
    mappings, store, tmp_path
):
    client, _ = make(mappings, store, tmp_path, validate=True)
    meta = loaded(client)
    response = client.post(f"{API}/preview", json={"yaml": meta["yaml"], "record": SAMPLE})
    preview = response.json()["preview"]
    assert preview["outcome"] == "map"
    assert preview["payload"]["amount"] == 4990
    assert preview["validation"] == {
        "payload_type": "payment_intent_create",
        "passed": True,
        "failures": [],
    }
    # An edit that makes the payload invalid shows the suite's failure, not a mapping error.
    broken = meta["yaml"].replace("constant: ordercloud", "constant: magento")
    preview = client.post(f"{API}/preview", json={"yaml": broken, "record": SAMPLE}).json()
    assert preview["preview"]["outcome"] == "map"
    assert preview["preview"]["validation"]["passed"] is False
    assert [f["rule"] for f in preview["preview"]["validation"]["failures"]] == [
        "validation.payment_intent_create.backend_known"
    ]


def test_preview_shows_skip_and_reject_outcomes_with_rule_and_reason(client):
    meta = loaded(client)
    po = {"kind": "sample", "file": "ordercloud_orders.json", "index": 2}
    skipped = client.post(f"{API}/preview", json={"yaml": meta["yaml"], "record": po}).json()
    assert (skipped["preview"]["outcome"], skipped["preview"]["rule"]) == (
        "skip",
        "rules.purchase_order",
    )
    bad = {"kind": "custom", "json": '{"ID": "X", "Status": "Open", "Currency": "EUR", '
           '"Total": 49.905}'}  # fmt: skip
    rejected = client.post(f"{API}/preview", json={"yaml": meta["yaml"], "record": bad}).json()
    assert rejected["preview"]["outcome"] == "reject"
    assert rejected["preview"]["rule"] == "money.exact_minor_units"


def test_schema_problems_come_back_with_their_line(client):
    meta = loaded(client)
    tail = "\n    transform:\n      name: money.to_minor_units"
    text = meta["yaml"].replace("    required: true" + tail, "    required: yes please" + tail)
    assert text != meta["yaml"]
    preview = client.post(f"{API}/preview", json={"yaml": text, "record": SAMPLE}).json()
    [problem] = preview["preview"]["problems"]
    line = text.splitlines().index("    required: yes please") + 1
    assert problem["line"] == line
    assert problem["where"] == "fields[0].required"
    assert "expected boolean" in problem["message"]
    assert preview["preview"]["outcome"] is None


def test_a_dead_letter_and_a_recent_inbox_record_can_be_previewed(client, store):
    letter = plant_dead_letter(
        store, {"ID": "SO-DL-9", "Status": "Open", "Currency": "JPY", "Total": "5400"}
    )
    with store.begin() as tx:
        tx.add_to_inbox(
            event_id="oc_log_1", source="ordercloud", event_type="POST /orders/{orderID}/submit",
            event_created=utcnow(), object_id="SO-WH-1",
            body={"Verb": "POST", "Response": {"Body": {"ID": "SO-WH-1", "Status": "Open",
                  "Currency": "USD", "Total": 12.5}}},
        )  # fmt: skip
    meta = loaded(client)
    [recent] = meta["records"]["recent"]
    out = client.post(f"{API}/preview", json={"yaml": meta["yaml"], "record": recent["ref"]})
    assert out.json()["preview"]["payload"]["amount"] == 1250  # 12.5 read back as exact Decimal
    out = client.post(
        f"{API}/preview",
        json={"yaml": meta["yaml"], "record": {"kind": "dead_letter", "id": letter}},
    )
    assert out.json()["preview"]["payload"]["amount"] == 5400


def test_dead_letters_need_read_access_to_the_replay_dag(mappings, store, tmp_path):
    letter = plant_dead_letter(store, {"ID": "SO-DL-2", "Status": "Open", "Currency": "EUR"})
    auth = Auth(refuse={("dead_letter_replay", "GET")})
    client, _ = make(mappings, store, tmp_path, auth=auth)
    meta = loaded(client)
    assert meta["records"]["dead_letters"] == []
    out = client.post(
        f"{API}/preview",
        json={"yaml": meta["yaml"], "record": {"kind": "dead_letter", "id": letter}},
    )
    assert out.status_code == 403


# --- edits --------------------------------------------------------------------------------


def test_an_edit_returns_the_new_yaml_with_comments_kept_and_the_new_preview(client):
    meta = loaded(client)
    edit = {"op": "set", "path": ["fields", 0], "key": "source", "value": "Subtotal"}
    out = client.post(f"{API}/edit", json={"yaml": meta["yaml"], "edit": edit, "record": SAMPLE})
    assert out.status_code == 200
    data = out.json()
    assert data["yaml"] == meta["yaml"].replace(
        "  - target: amount\n    source: Total\n", "  - target: amount\n    source: Subtotal\n"
    )
    assert data["preview"]["payload"]["amount"] == 4590
    lookup = {"op": "set_lookup", "table": "nope", "key": "a", "value": "b"}
    refused = client.post(
        f"{API}/edit", json={"yaml": meta["yaml"], "edit": lookup, "record": SAMPLE}
    )
    assert refused.status_code == 422 and "lookups.nope" in refused.json()["error"]


# --- suggestions --------------------------------------------------------------------------


def without_receipt_email(text):
    field = "  - target: receipt_email\n    source: FromUser.Email\n    transform: text.trim\n"
    assert field in text
    return text.replace(field, "")


def test_suggestions_cover_only_unmapped_targets_and_accepted_ones_rank_higher(client):
    meta = loaded(client)
    text = without_receipt_email(meta["yaml"])
    body = {"yaml": text, "record": SAMPLE}
    found = client.post(f"{API}/suggest", json=body).json()
    by_target = {s["target"]: s["candidates"] for s in found["suggestions"]}
    assert "amount" not in by_target and "currency" not in by_target
    assert not any(t.startswith("shipping.") for t in by_target)  # shipping is mapped whole
    first = by_target["receipt_email"][0]
    assert first["source"] == "FromUser.Email"
    assert "value pattern: email" in first["reasons"]
    assert first["field"] == {"target": "receipt_email", "source": "FromUser.Email"}

    # Accepting the runner-up for customer puts it first next time, with the reason.
    before = by_target["customer"]
    runner_up = before[1]
    recorded = client.post(
        f"{API}/feedback",
        json={"yaml": text, "verdict": "accepted", "source": runner_up["source"],
              "target": "customer"},
    )  # fmt: skip
    assert recorded.status_code == 200
    again = client.post(f"{API}/suggest", json=body).json()
    top = {s["target"]: s["candidates"] for s in again["suggestions"]}["customer"][0]
    assert top["source"] == runner_up["source"]
    assert "accepted before (1x)" in top["reasons"]
    assert top["score"] > runner_up["score"]


def test_a_rejected_suggestion_drops(client):
    meta = loaded(client)
    body = {"yaml": without_receipt_email(meta["yaml"]), "record": SAMPLE}
    client.post(
        f"{API}/feedback",
        json={"verdict": "rejected", "source": "FromUser.Email", "target": "receipt_email"},
    )
    found = client.post(f"{API}/suggest", json=body).json()
    receipt = {s["target"]: s["candidates"] for s in found["suggestions"]}.get("receipt_email", [])
    assert "FromUser.Email" not in [c["source"] for c in receipt]


def test_accepting_a_suggestion_never_replaces_a_mapped_field(client):
    meta = loaded(client)
    edit = {"op": "add_field", "field": {"target": "amount", "source": "Subtotal"}}
    out = client.post(f"{API}/edit", json={"yaml": meta["yaml"], "edit": edit, "record": SAMPLE})
    assert out.status_code == 422
    assert "amount is already mapped" in out.json()["error"]


def test_a_pasted_target_sample_is_used_for_suggestions(client):
    meta = loaded(client)
    target = json.dumps({"buyer_email": "x@example.com", "amount": 100})
    found = client.post(
        f"{API}/suggest", json={"yaml": meta["yaml"], "record": SAMPLE, "target": target}
    ).json()
    assert [s["target"] for s in found["suggestions"]] == ["buyer_email"]
    assert found["suggestions"][0]["candidates"][0]["source"] == "FromUser.Email"


def test_a_new_mapping_is_drafted_from_two_sample_payloads(client):
    source = (REPO / "benchmarks/data/objects/xc_order.json").read_text()
    target = json.dumps({"amount": 1099, "currency": "usd", "receipt_email": "a@example.com"})
    out = client.post(
        "/studio/api/draft",
        json={"name": "xc_order_to_payment_intent", "source_kind": "xc.order",
              "target_kind": "stripe.payment_intent.create", "source_json": source,
              "target_json": target},
    )  # fmt: skip
    assert out.status_code == 200, out.text
    data = out.json()
    assert data["problems"] == []
    from ruamel.yaml import YAML

    fields = {f["target"]: f for f in YAML(typ="safe").load(data["yaml"])["fields"]}
    # A decimal total becomes the integer amount through the money transform, in its currency.
    assert fields["amount"]["source"] in ("Totals.GrandTotal.Amount", "Totals.SubTotal.Amount")
    assert fields["amount"]["transform"]["name"] == "money.to_minor_units"
    assert fields["amount"]["transform"]["args"]["currency"]["path"].endswith("CurrencyCode")
    assert fields["receipt_email"] == {"target": "receipt_email", "source": "Components[0].Email"}


# --- diff, save, download -----------------------------------------------------------------


def edited(client, meta):
    edit = {"op": "set", "path": ["fields", 0], "key": "source", "value": "Subtotal"}
    return client.post(
        f"{API}/edit", json={"yaml": meta["yaml"], "edit": edit, "record": SAMPLE}
    ).json()["yaml"]


def test_save_shows_the_diff_then_writes_the_file_with_its_comments(client, mappings):
    meta = loaded(client)
    text = edited(client, meta)
    diff = client.post(f"{API}/diff", json={"yaml": text}).json()
    assert "-    source: Total\n+    source: Subtotal\n" in diff["diff"]
    assert diff["write_enabled"] is True and diff["problems"] == []
    saved = client.post(f"{API}/save", json={"yaml": text, "base_sha": meta["sha"]})
    assert saved.status_code == 200, saved.text
    on_disk = (mappings / f"{PI}.yaml").read_text()
    assert on_disk == text
    assert "# Checked in order; the first skip or reject that holds decides." in on_disk
    # A second save from the old base is a conflict, not a silent overwrite.
    again = client.post(f"{API}/save", json={"yaml": meta["yaml"], "base_sha": meta["sha"]})
    assert again.status_code == 409


def test_without_the_write_setting_nothing_is_written_and_the_yaml_downloads(
    mappings, store, tmp_path
):
    client, _ = make(mappings, store, tmp_path, write=False)
    meta = loaded(client)
    assert meta["write_enabled"] is False
    text = edited(client, meta)
    refused = client.post(f"{API}/save", json={"yaml": text, "base_sha": meta["sha"]})
    assert refused.status_code == 403 and "studio_write" in refused.json()["error"]
    assert (mappings / f"{PI}.yaml").read_text() == meta["yaml"]
    download = client.post(f"/studio/mappings/{PI}/download", data={"yaml": text})
    assert download.status_code == 200
    assert download.headers["content-disposition"] == f'attachment; filename="{PI}.yaml"'
    assert download.text == text


def test_a_broken_mapping_is_neither_saved_nor_downloaded(client, mappings):
    meta = loaded(client)
    broken = meta["yaml"].replace("name: money.to_minor_units", "name: money.to_minor")
    saved = client.post(f"{API}/save", json={"yaml": broken, "base_sha": meta["sha"]})
    assert saved.status_code == 422
    assert "unknown transform 'money.to_minor'" in saved.json()["problems"][0]["message"]
    assert (mappings / f"{PI}.yaml").read_text() == meta["yaml"]
    download = client.post(f"/studio/mappings/{PI}/download", data={"yaml": broken})
    assert download.status_code == 422
    renamed = meta["yaml"].replace(f"name: {PI}", "name: another_name")
    assert (
        client.post(f"{API}/save", json={"yaml": renamed, "base_sha": meta["sha"]}).status_code
        == 422
    )


def test_the_write_setting_is_off_unless_airflow_config_turns_it_on(monkeypatch):
    from stripe_sitecore.ui.studio import write_enabled_from_config

    monkeypatch.delenv("AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE", raising=False)
    assert write_enabled_from_config() is False
    monkeypatch.setenv("AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE", "True")
    assert write_enabled_from_config() is True
    monkeypatch.setenv("AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE", "false")
    assert write_enabled_from_config() is False
