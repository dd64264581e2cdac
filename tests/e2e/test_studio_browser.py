"""The mapping studio in a real browser (Debian's chromium through Playwright) against a real
Airflow api-server, scheduler and dag-processor with the project's plugin.

One walk through, as a person would: log in on Airflow's own login page, open the studio for the
PaymentIntent mapping (a copy of ``include/mappings`` whose ``receipt_email`` field was taken
out), change the amount's source and see the mapped payload change, accept the suggestion for
``receipt_email``, save, and find on disk exactly the expected YAML, comments and all. Then replay
the mapping's dead letters: the click must create a ``dead_letter_replay`` run for its source.

Chromium is the system's (``apt-get install chromium``), driven by the pip ``playwright`` package
with ``executable_path``: Playwright's own browser download is not used. Without chromium or
playwright the test skips with the reason, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from stripe_sitecore.store import StateStore, models
from stripe_sitecore.store.state import utcnow
from tests.harness.airflow import REPO_ROOT, STACK_ADMIN_USER
from tests.harness.services import state_connection

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("STUDIO_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium's own connections are refused here and it
# stalls; the rest keep a headless run quiet and deterministic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAPPING = "ordercloud_order_to_payment_intent"
STUDIO = f"/stripe-sitecore/ui/studio/m/{MAPPING}"
RECEIPT_FIELD = "  - target: receipt_email\n    source: FromUser.Email\n    transform: text.trim\n"
PLANTED_ORDER = "SO-STUDIO-1"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def playwright_browser():
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "the playwright package is not installed (pip install playwright)"
    if reason:
        if _in_ci():
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def mappings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("studio") / "mappings"
    shutil.copytree(REPO_ROOT / "include" / "mappings", folder)
    path = folder / f"{MAPPING}.yaml"
    text = path.read_text()
    assert RECEIPT_FIELD in text
    path.write_text(text.replace(RECEIPT_FIELD, ""))
    return folder


@pytest.fixture(scope="module")
def stack(start_airflow_stack, mappings, tmp_path_factory, playwright_browser):
    work = mappings.parent
    store = StateStore.from_url(f"sqlite:///{work / 'state.db'}")
    store.migrate()
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(models.dead_letters).values(
                source="ordercloud.orders", record_key=PLANTED_ORDER,
                record={"ID": PLANTED_ORDER, "Status": "Open", "Currency": "EUR", "Total": "1.005"},
                rule="money.exact_minor_units", reason="amount: 1.005 EUR has 3 decimal places",
                first_seen=now, last_seen=now, attempts=1, status="open",
            )
        )  # fmt: skip
    url = store.engine.url.render_as_string(hide_password=False)
    store.dispose()
    # Only the replay DAG: the page's replay button triggers it through Airflow's REST API.
    dags = tmp_path_factory.mktemp("studio-dags")
    shutil.copy(REPO_ROOT / "dags" / "dead_letter_replay.py", dags / "dead_letter_replay.py")
    env = {
        "AIRFLOW_CONN_STRIPE_SITECORE_STATE": json.dumps(state_connection(url)),
        "STRIPE_SITECORE_MAPPINGS_DIR": str(mappings),
        "STRIPE_SITECORE_STUDIO_MEMORY": str(work / "suggestion_memory.json"),
        "AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE": "true",
    }
    return start_airflow_stack(env, dags_folder=dags)


def target_value(page, path: str) -> str:
    return page.locator(f'#target-fields tr[data-path="{path}"] td.value').inner_text()


def test_edit_preview_suggest_save_and_replay_in_a_real_browser(
    stack, playwright_browser, mappings
):
    original = (mappings / f"{MAPPING}.yaml").read_text()
    page = playwright_browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        # Airflow's own login page, coming back to the studio.
        page.goto(f"{stack.base_url}/auth/login?next={STUDIO}")
        page.get_by_label("Username").fill(STACK_ADMIN_USER)
        page.get_by_label("Password").fill(stack.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{STUDIO}", timeout=30_000)
        # The first preview imports Great Expectations in the api-server: seconds, once.
        page.wait_for_selector("#studio[data-ready=true]", timeout=120_000)
        assert page.locator("#outcome").inner_text() == "map"
        assert target_value(page, "amount") == "4990"  # SO-1001: 49.90 EUR
        assert page.locator("#validation").get_attribute("data-passed") == "true"
        assert "receipt_email" not in page.locator("#target-fields").inner_text()

        # Edit the amount's source: the preview follows at once.
        source = page.locator('#field-lines tr[data-target="amount"] input.f-from')
        source.fill("Subtotal")
        source.press("Tab")
        page.wait_for_function(
            """() => document.querySelector('#target-fields tr[data-path="amount"] td.value')
                     ?.textContent === '4590'""",
            timeout=60_000,
        )
        assert "changed" in page.locator('#target-fields tr[data-path="amount"]').get_attribute(
            "class"
        )

        # A broken transform name shows at its line in the YAML pane, then is fixed again.
        yaml_box = page.locator("#yaml-text")
        good_yaml = yaml_box.input_value()
        yaml_box.fill(good_yaml.replace("name: currency.code", "name: currency.kode"))
        problem = page.locator("#yaml-lines li.problem").first
        problem.wait_for(timeout=30_000)
        line = good_yaml.splitlines().index("      name: currency.code") + 1
        assert problem.get_attribute("data-line") == str(line)
        assert "unknown transform 'currency.kode'" in problem.inner_text()
        yaml_box.fill(good_yaml)
        page.wait_for_function(
            "() => !document.querySelector('#yaml-lines li.problem')", timeout=30_000
        )

        # Suggestions: accept FromUser.Email for the unmapped receipt_email.
        page.click("#suggest")
        candidate = page.locator(
            '.suggestion[data-target="receipt_email"] .candidate[data-source="FromUser.Email"]'
        )
        candidate.wait_for(timeout=30_000)
        assert "value pattern: email" in candidate.inner_text()
        candidate.locator("button.accept").click()
        page.locator('#field-lines tr[data-target="receipt_email"]').wait_for(timeout=30_000)
        page.wait_for_function(
            """() => document.querySelector('#target-fields tr[data-path="receipt_email"] td.value')
                     ?.textContent === 'ada@example.com'""",
            timeout=60_000,
        )

        # Save: the diff first, then the file on disk.
        page.click("#save")
        page.locator("#save-pane").wait_for(state="visible")
        diff = page.locator("#diff").inner_text()
        assert "-    source: Total\n+    source: Subtotal" in diff
        assert "+  - target: receipt_email\n+    source: FromUser.Email" in diff
        page.click("#write")
        page.wait_for_selector("#save-result[data-written=true]", timeout=30_000)
        expected = original.replace(
            "  - target: amount\n    source: Total\n", "  - target: amount\n    source: Subtotal\n"
        ) + ("  - target: receipt_email\n    source: FromUser.Email\n")
        assert (mappings / f"{MAPPING}.yaml").read_text() == expected

        # The accepted pair is remembered for next time.
        memory = json.loads((mappings.parent / "suggestion_memory.json").read_text())
        assert [(e["source"], e["target"]) for e in memory["accepted"]] == [
            ("FromUser.Email", "receipt_email")
        ]

        # Replay this mapping's dead letters: one click to ask, one to trigger.
        page.click("#replay")
        page.click("#replay-confirm")
        link = page.locator("#replay-run")
        link.wait_for(timeout=30_000)
        runs = stack.api("GET", "/dags/dead_letter_replay/dagRuns")["dag_runs"]
        assert [r["conf"] for r in runs] == [{"source": "ordercloud.orders"}]
        assert runs[0]["dag_run_id"] in link.inner_text()
        assert errors == []
    finally:
        page.close()
