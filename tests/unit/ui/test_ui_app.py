"""The UI views' FastAPI app against a SQLite state DB and a reports dir in tmp_path.

The ``Authorizer`` is injected: a fake that lets everyone in (and records which DAG was asked
about), one that refuses, and Airflow's own, which must refuse a request without a token.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi import HTTPException
from fastapi.testclient import TestClient

from stripe_sitecore.store import StateStore, models
from stripe_sitecore.ui.app import create_app
from stripe_sitecore.ui.auth import airflow_authorizer

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SECRET_FILE_TEXT = "fake-secret-outside-the-reports-dir"


@pytest.fixture
def store(tmp_path):
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    yield store
    store.dispose()


def plant(
    store,
    *,
    source="stripe.events",
    key="evt_test_1",
    rule="shape",
    reason="fake reason",
    status="open",
    minutes=0,
    record=None,
) -> int:
    """One dead letter that last failed ``minutes`` after T0."""
    seen = T0 + timedelta(minutes=minutes)
    with store.engine.begin() as conn:
        result = conn.execute(
            sa.insert(models.dead_letters).values(
                source=source,
                record_key=key,
                record=record if record is not None else {"id": key, "email": "jane@example.test"},
                rule=rule,
                reason=reason,
                first_seen=T0,
                last_seen=seen,
                attempts=1 + minutes,
                status=status,
            )
        )
        return result.inserted_primary_key[0]


@pytest.fixture
def reports_dir(tmp_path):
    base = tmp_path / "reports"
    for report, days in {
        "reconciliation": ("2026-11-18", "2026-11-20", "2026-11-19"),
        "fraud": ("2026-11-19",),
    }.items():
        folder = base / report
        folder.mkdir(parents=True)
        for day in days:
            (folder / f"{day}.html").write_text(f"<h1>{report} {day} fake report</h1>")
            (folder / f"{day}.csv").write_text(f"item,amount\n{report}-{day},100\n")
    # Not reports: ignored by the listing, never served.
    (base / "reconciliation" / "notes.txt").write_text("not a report")
    (base / "reconciliation" / "20261121.html").write_text("not an ISO day")
    (base / "reconciliation" / "2026-11-17.html.bak").write_text("a backup")
    (tmp_path / "secret.html").write_text(SECRET_FILE_TEXT)
    (base / "secret.html").write_text(SECRET_FILE_TEXT)
    return base


class FakeAuth:
    """Lets in everyone except for the DAGs in ``refuse`` (403); remembers what was asked."""

    def __init__(self, refuse=()):
        self.refuse, self.asked = set(refuse), []

    async def __call__(self, request, dag_id):
        self.asked.append(dag_id)
        if dag_id in self.refuse:
            raise HTTPException(403, f"no read access to DAG {dag_id}")
        return {"username": "fake-viewer"}


def make_client(store, reports_dir, authorize=None, page_size=50, login_url=None):
    app = create_app(
        lambda: store,
        lambda: {"reconciliation": reports_dir, "fraud": reports_dir},
        authorize=authorize or FakeAuth(),
        login_url=login_url or (lambda next_url: None),
        page_size=page_size,
    )
    return TestClient(app)


@pytest.fixture
def client(store, reports_dir):
    return make_client(store, reports_dir)


def row_keys(page_html: str, keys) -> list[str]:
    """The planted record keys in the order the page shows them."""
    return sorted((k for k in keys if f">{k}</a>" in page_html), key=page_html.index)


# --- authentication and authorization -----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/dead-letters",
        "/dead-letters?status=any",
        "/dead-letters/1",
        "/reports",
        "/reports/reconciliation/2026-11-20.html",
        "/reports/reconciliation/2026-11-20.csv",
    ],
)
def test_airflows_own_check_refuses_a_request_without_a_token(store, reports_dir, path):
    plant(store, key="evt_test_private", record={"email": "private@example.test"})
    client = make_client(
        store,
        reports_dir,
        authorize=airflow_authorizer,
        login_url=lambda next_url: f"/auth/login?next={next_url}",
    )
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "evt_test_private" not in response.text
    assert "private@example.test" not in response.text
    assert "fake report" not in response.text and "item,amount" not in response.text
    assert 'href="/auth/login?next=' in response.text


def test_a_bad_bearer_token_or_cookie_is_not_a_login(store, reports_dir):
    client = make_client(store, reports_dir, authorize=airflow_authorizer)
    # An empty bearer and an empty cookie are no credentials at all.
    assert client.get("/dead-letters", headers={"Authorization": "Bearer "}).status_code in (
        401,
        403,
    )
    client.cookies.set("_token", "")
    assert client.get("/dead-letters").status_code == 401


def test_dead_letters_need_read_access_to_the_replay_dag(store, reports_dir):
    plant(store, key="evt_test_hidden")
    auth = FakeAuth(refuse={"dead_letter_replay"})
    client = make_client(store, reports_dir, authorize=auth)
    for path in ("/dead-letters", "/dead-letters/1"):
        response = client.get(path)
        assert response.status_code == 403
        assert "evt_test_hidden" not in response.text
    assert auth.asked == ["dead_letter_replay", "dead_letter_replay"]


def test_reports_need_read_access_to_the_dag_that_writes_them(store, reports_dir):
    auth = FakeAuth(refuse={"fraud_report_daily"})
    client = make_client(store, reports_dir, authorize=auth)
    listing = client.get("/reports")
    assert listing.status_code == 200
    assert "/reports/reconciliation/2026-11-20.html" in listing.text
    assert "/reports/fraud/" not in listing.text
    assert client.get("/reports/fraud/2026-11-19.csv").status_code == 403
    assert client.get("/reports/reconciliation/2026-11-20.csv").status_code == 200

    nobody = make_client(
        store,
        reports_dir,
        authorize=FakeAuth(refuse={"fraud_report_daily", "reconciliation_daily"}),
    )
    assert nobody.get("/reports").status_code == 403


# --- dead letters -------------------------------------------------------------------------


def test_the_list_shows_open_dead_letters_most_recently_failed_first(client, store):
    plant(store, key="evt_test_old", minutes=1)
    plant(store, key="evt_test_new", minutes=30, rule="amount", reason="amount 1.005 not exact")
    plant(store, key="evt_test_mid", minutes=10)
    plant(store, key="evt_test_done", minutes=40, status="resolved")

    response = client.get("/dead-letters")
    assert response.status_code == 200
    page = response.text
    keys = ["evt_test_old", "evt_test_new", "evt_test_mid", "evt_test_done"]
    assert row_keys(page, keys) == ["evt_test_new", "evt_test_mid", "evt_test_old"]
    assert "3 dead letters" in page
    for shown in ("stripe.events", "amount", "amount 1.005 not exact", "2026-11-20 08:30:00 UTC"):
        assert shown in page
    assert 'href="/dags/dead_letter_replay"' in page
    assert "<form" in page and "<button" in page  # a filter form, and no replay button:
    assert 'method="post"' not in page.lower()


def test_the_list_filters_by_source_and_status(client, store):
    plant(store, source="stripe.events", key="evt_test_a")
    plant(store, source="ordercloud.orders", key="ord_test_b", minutes=1)
    plant(store, source="ordercloud.orders", key="ord_test_c", minutes=2, status="superseded")
    keys = ["evt_test_a", "ord_test_b", "ord_test_c"]

    def shown(query):
        response = client.get(f"/dead-letters{query}")
        assert response.status_code == 200, response.text
        return row_keys(response.text, keys)

    assert shown("?source=ordercloud.orders") == ["ord_test_b"]
    assert shown("?source=ordercloud.orders&status=any") == ["ord_test_c", "ord_test_b"]
    assert shown("?status=superseded") == ["ord_test_c"]
    assert shown("?status=resolved") == []
    assert shown("?source=&status=open") == ["ord_test_b", "evt_test_a"]
    assert shown("?source=no.such.source") == []
    assert client.get("/dead-letters?status=deleted").status_code == 400
    assert client.get("/dead-letters?page=0").status_code == 400
    assert client.get("/dead-letters?page=two").status_code == 400


def test_the_list_pages_and_the_filter_survives_paging(store, reports_dir):
    for n in range(5):
        plant(store, source="stripe.events", key=f"evt_test_{n}", minutes=n)
    plant(store, source="other.source", key="oth_test_x", minutes=99)
    client = make_client(store, reports_dir, page_size=2)
    keys = [f"evt_test_{n}" for n in range(5)] + ["oth_test_x"]

    pages = []
    url = "/dead-letters?source=stripe.events"
    while url:
        page = client.get(url).text
        pages.append(row_keys(page, keys))
        older = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = html.unescape(older.group(1)) if older else None
    assert pages == [["evt_test_4", "evt_test_3"], ["evt_test_2", "evt_test_1"], ["evt_test_0"]]

    last = client.get("/dead-letters?source=stripe.events&page=3").text
    assert "5 dead letters, 5–5 shown" in last
    assert 'rel="prev"' in last and 'rel="next"' not in last
    assert "source=stripe.events&amp;status=open&amp;page=2" in last
    assert row_keys(client.get("/dead-letters?source=stripe.events&page=9").text, keys) == []


def test_a_script_in_a_dead_letter_is_shown_as_text_not_run(client, store):
    evil = "<script>alert('fake')</script>"
    dead_letter_id = plant(
        store,
        source=f"src{evil}",
        key=f"evt_test_{evil}",
        rule=f"rule{evil}",
        reason=f"reason {evil} & more",
        record={"name": f"Jane {evil}", "note": '"><img src=x onerror=alert(1)>'},
    )
    for path in (
        "/dead-letters",
        "/dead-letters?status=any",
        f"/dead-letters?source=src{evil}",
        f"/dead-letters/{dead_letter_id}",
    ):
        response = client.get(path)
        assert response.status_code == 200
        assert "<script>" not in response.text, path
        assert "<img" not in response.text, path
        assert "&lt;script&gt;alert(" in response.text, path
        assert "script-src" not in response.headers["content-security-policy"]
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert "reason &lt;script&gt;alert(&#39;fake&#39;)&lt;/script&gt; &amp; more" in (
        client.get("/dead-letters").text
    )


def test_the_detail_page_shows_the_stored_record_as_pretty_json(client, store):
    record = {"id": "ord_test_1", "Total": "12.30", "ShippingAddress": {"City": "Fakeville"}}
    dead_letter_id = plant(store, key="ord_test_1", record=record, reason="fake mapping failed")
    response = client.get(f"/dead-letters/{dead_letter_id}")
    assert response.status_code == 200
    pretty = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False)
    shown = html.unescape(response.text.split("<pre>", 1)[1].split("</pre>", 1)[0])
    assert shown == pretty
    assert "fake mapping failed" in response.text
    assert 'href="/dags/dead_letter_replay"' in response.text
    assert client.get(f"/dead-letters/{dead_letter_id + 1}").status_code == 404
    assert client.get("/dead-letters/not-a-number").status_code == 400


def test_an_unreachable_state_db_is_a_503_not_a_500(reports_dir):
    def broken_store():
        raise ConnectionError("fake: state DB down")

    app = create_app(broken_store, lambda: {}, authorize=FakeAuth(), login_url=lambda _: None)
    response = TestClient(app).get("/dead-letters")
    assert response.status_code == 503
    assert "fake: state DB down" not in response.text


# --- reports ------------------------------------------------------------------------------


def test_the_report_list_shows_each_reports_days_newest_first(client):
    response = client.get("/reports")
    assert response.status_code == 200
    page = response.text
    links = [part.split('"')[0] for part in page.split('href="')[1:]]
    links = [link for link in links if link.startswith("/reports/")]
    assert links == [
        "/reports/reconciliation/2026-11-20.html",
        "/reports/reconciliation/2026-11-20.csv",
        "/reports/reconciliation/2026-11-19.html",
        "/reports/reconciliation/2026-11-19.csv",
        "/reports/reconciliation/2026-11-18.html",
        "/reports/reconciliation/2026-11-18.csv",
        "/reports/fraud/2026-11-19.html",
        "/reports/fraud/2026-11-19.csv",
    ]
    assert "notes" not in page and "20261121" not in page and "2026-11-17" not in page


def test_a_report_without_days_says_so(store, tmp_path):
    client = make_client(store, tmp_path / "no-reports-yet")
    response = client.get("/reports")
    assert response.status_code == 200
    assert response.text.count("No days reported yet.") == 2


def test_the_html_report_is_served_inline_and_the_csv_as_a_download(client):
    page = client.get("/reports/reconciliation/2026-11-20.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "attachment" not in page.headers.get("content-disposition", "")
    assert page.text == "<h1>reconciliation 2026-11-20 fake report</h1>"
    assert page.headers["content-security-policy"].startswith("default-src 'none'")

    data = client.get("/reports/fraud/2026-11-19.csv")
    assert data.status_code == 200
    assert data.headers["content-type"].startswith("text/csv")
    assert data.headers["content-disposition"] == 'attachment; filename="fraud-2026-11-19.csv"'
    assert data.text == "item,amount\nfraud-2026-11-19,100\n"


@pytest.mark.parametrize(
    "path",
    [
        "/reports/secrets/2026-11-20.html",  # unknown report
        "/reports/reconciliation/2026-11-21.html",  # a day not reported
        "/reports/fraud/2026-11-20.csv",
        "/reports/reconciliation/20261121.html",  # not YYYY-MM-DD, though the file exists
        "/reports/reconciliation/notes.html",
        "/reports/reconciliation/..%2Fsecret.html",
        "/reports/reconciliation/..%2F..%2Fsecret.html",
        "/reports/..%2Fsecret.html/2026-11-20.html",
        "/reports/%2e%2e/secret.html",
        "/reports/reconciliation/2026-11-20.txt",
        "/reports/reconciliation/2026-11-17.html.bak",
    ],
)
def test_only_report_files_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 404, path
    assert SECRET_FILE_TEXT not in response.text
    assert "not an ISO day" not in response.text and "a backup" not in response.text
