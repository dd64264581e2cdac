"""End to end: the plugin's UI views inside a real Airflow api-server, behind Airflow's login.

A dead letter is planted in the ``stripe_sitecore_state`` database and a report file in the
reports dir named by the ``stripe_sitecore_reconciliation`` Variable; the views must refuse
them to a request without (or with a forged) JWT and show them with the admin's JWT, sent as
the REST API's ``Authorization: Bearer`` header or as the ``_token`` cookie the Airflow UI keeps.
No DAGs are needed, so the stack parses an empty DAG folder.
"""

from __future__ import annotations

import json

import httpx
import jwt
import pytest
import sqlalchemy as sa

from stripe_sitecore.store import StateStore, models
from stripe_sitecore.store.state import utcnow
from tests.harness.services import state_connection

pytestmark = pytest.mark.e2e

UI = "/stripe-sitecore/ui"
PLANTED_KEY = "evt_test_ui_e2e_0001"
PLANTED_EMAIL = "ui-e2e-customer@example.test"
REPORT_DAY = "2026-11-20"
REPORT_HTML = "<h1>fake reconciliation report for the UI e2e test</h1>"


@pytest.fixture(scope="module")
def state_store(tmp_path_factory):
    store = StateStore.from_url(f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}")
    store.migrate()
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(models.dead_letters).values(
                source="stripe.events",
                record_key=PLANTED_KEY,
                record={"id": PLANTED_KEY, "customer_email": PLANTED_EMAIL},
                rule="fake_rule",
                reason="fake reason <script>alert(1)</script>",
                first_seen=now,
                last_seen=now,
                attempts=1,
                status="open",
            )
        )
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def stack(start_airflow_stack, state_store, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    (reports / "reconciliation").mkdir()
    (reports / "reconciliation" / f"{REPORT_DAY}.html").write_text(REPORT_HTML)
    url = state_store.engine.url.render_as_string(hide_password=False)
    env = {
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE": json.dumps(state_connection(url)),
        "AIRFLOW_VAR_STRIPE_SITECORE_RECONCILIATION": json.dumps({"reports_dir": str(reports)}),
    }
    return start_airflow_stack(env, dags_folder=tmp_path_factory.mktemp("no-dags"))


def admin_token(stack) -> str:
    return stack.client.headers["Authorization"].removeprefix("Bearer ")


def test_without_a_valid_airflow_login_the_views_are_refused(stack):
    forged = jwt.encode(
        {"sub": "admin", "role": "admin", "aud": "apache-airflow", "exp": 4102444800},
        "fake-not-the-api-secret-" + "0" * 64,
        algorithm="HS512",
    )
    for path in (
        "/dead-letters",
        "/dead-letters/1",
        "/reports",
        f"/reports/reconciliation/{REPORT_DAY}.html",
    ):
        for headers, cookies, expected in (
            ({}, {}, 401),
            ({"Authorization": "Bearer fake-not-a-jwt"}, {}, 403),
            ({"Authorization": f"Bearer {forged}"}, {}, 403),
            ({}, {"_token": forged}, 403),
        ):
            response = httpx.get(f"{stack.base_url}{UI}{path}", headers=headers, cookies=cookies)
            assert response.status_code == expected, (path, headers, cookies, response.text)
            assert PLANTED_KEY not in response.text and PLANTED_EMAIL not in response.text
            assert "fake reconciliation report" not in response.text
    # The 401 page links to the auth manager's login page, coming back here.
    refused = httpx.get(f"{stack.base_url}{UI}/dead-letters")
    assert "/auth/login?next=%2Fstripe-sitecore%2Fui%2Fdead-letters" in refused.text


def test_the_admins_jwt_as_bearer_or_as_the_ui_cookie_shows_the_dead_letters(stack):
    as_bearer = stack.client.get(f"{UI}/dead-letters")
    with httpx.Client(base_url=stack.base_url, cookies={"_token": admin_token(stack)}) as browser:
        as_cookie = browser.get(f"{UI}/dead-letters")
        for response in (as_bearer, as_cookie):
            assert response.status_code == 200, response.text
            assert PLANTED_KEY in response.text
            assert "fake reason &lt;script&gt;" in response.text
            assert "<script>" not in response.text
        # Links carry the mount prefix; the detail page shows the stored record.
        assert f'href="{UI}/dead-letters/1"' in as_cookie.text
        detail = browser.get(f"{UI}/dead-letters/1")
        assert detail.status_code == 200, detail.text
        assert PLANTED_EMAIL in detail.text
        assert 'href="/dags/dead_letter_replay"' in detail.text

        # The reports dir comes from the reconciliation Variable, read in the api-server.
        listing = browser.get(f"{UI}/reports")
        assert f'href="{UI}/reports/reconciliation/{REPORT_DAY}.html"' in listing.text
        report = browser.get(f"{UI}/reports/reconciliation/{REPORT_DAY}.html")
        assert (report.status_code, report.text) == (200, REPORT_HTML)


def test_the_plugin_lists_the_views_for_the_airflow_ui_navigation(stack):
    plugins = stack.api("GET", "/plugins")["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "stripe_sitecore"]
    views = {view["name"]: view for view in plugin["external_views"]}
    assert views["Stripe–Sitecore reports"]["href"] == f"{UI}/reports"
    assert views["Stripe–Sitecore dead letters"]["href"] == f"{UI}/dead-letters"
    assert {view["destination"] for view in views.values()} == {"nav"}
    assert {app["url_prefix"] for app in plugin["fastapi_apps"]} == {
        "/stripe-sitecore/webhooks",
        UI,
    }
