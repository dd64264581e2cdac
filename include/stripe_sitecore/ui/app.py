"""The UI views as a FastAPI app, mounted by the plugin at ``/stripe-sitecore/ui``.

- ``GET /reports``: charts of the last days (``stripe_sitecore.ui.charts``: matched against
  discrepancies per day, money per currency, fraud flags per rule), and the days reported per
  report, with links to
  ``GET /reports/{report}/{day}.html`` (inline) and ``.csv`` (download).
- ``GET /start``: the walkthrough ("Start here", docs/demo.md).
- ``GET /dead-letters?source=&status=&page=``: dead letters, most recently failed first, paged.
- ``GET /dead-letters/{id}``: one dead letter with its stored record as JSON.
- ``/studio/...``: the mapping studio (``stripe_sitecore.ui.studio_app``, docs/studio.md).

The reports and dead-letter pages are read-only; the studio writes a mapping file only where
``[stripe_sitecore] studio_write`` allows it. Every route asks the ``Authorizer`` first (Airflow's
login, see ``stripe_sitecore.ui.auth``); the state DB and the reports dir come from providers
called per request, so the app is built without a database and tests can give it their own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from stripe_sitecore.ui.auth import Authorizer, airflow_authorizer, airflow_login_url
from stripe_sitecore.ui.charts import PLANTED_CATEGORIES, dashboard, day_range, planted_found
from stripe_sitecore.ui.pages import environment
from stripe_sitecore.ui.reports import REPORT_DAGS, ReportsDirs, list_days, parse_day, report_file
from stripe_sitecore.ui.studio import StudioSettings
from stripe_sitecore.ui.studio_app import mount_studio
from stripe_sitecore.ui.studio_auth import StudioAuthorizer, airflow_studio_authorizer

if TYPE_CHECKING:
    from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

StoreProvider = Callable[[], "StateStore"]

DEAD_LETTERS_DAG = "dead_letter_replay"
# The walkthrough starts with this DAG: who may read it may read the guide.
START_DAG = "sitecore_orders_to_stripe"
STATUS_FILTERS = ("open", "resolved", "superseded", "any")
PAGE_SIZE = 50
REPORT_TITLES = {"reconciliation": "Reconciliation", "fraud": "Fraud flags"}

# Our pages: no scripts at all, nothing fetched; framed only by Airflow's UI (same origin).
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_app(
    store: StoreProvider,
    reports_dirs: ReportsDirs,
    authorize: Authorizer = airflow_authorizer,
    login_url: Callable[[str], str | None] = airflow_login_url,
    page_size: int = PAGE_SIZE,
    studio: StudioSettings | None = None,
    studio_authorize: StudioAuthorizer | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Stripe–Sitecore UI",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    templates = environment()

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def page(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
        html = templates.get_template(template).render(base=base(request), **values)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    async def read(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A read from the state DB, off the event loop; any failure reads as 503."""

        def run() -> Any:
            with store().begin() as tx:
                return function(tx, *args, **kwargs)

        try:
            return await run_in_threadpool(run)
        except Exception as exc:
            log.warning("state database unavailable to the UI: %s", type(exc).__name__)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "The state database is unavailable."
            ) from None

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        login = None
        headers = dict(SECURITY_HEADERS)
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            here = base(request) + request.url.path.removeprefix(base(request))
            if request.url.query:
                here += f"?{request.url.query}"
            login = login_url(here)
            headers["WWW-Authenticate"] = "Bearer"
        html = templates.get_template("error.html").render(
            base=base(request), status_code=exc.status_code, detail=exc.detail, login_url=login
        )
        return HTMLResponse(html, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        return await http_error(
            request, StarletteHTTPException(status.HTTP_400_BAD_REQUEST, "Bad query parameters.")
        )

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        return RedirectResponse(f"{base(request)}/reports", status_code=status.HTTP_303_SEE_OTHER)

    # --- start here -------------------------------------------------------------------

    @app.get("/start", response_class=HTMLResponse)
    async def start(request: Request) -> Response:
        """The walkthrough (docs/demo.md), with the planted problems the reports found."""
        await authorize(request, START_DAG)
        try:
            found = await read(lambda tx: planted_found(tx.conn))
        except HTTPException:
            found = []
        return page(request, "start.html", planted=PLANTED_CATEGORIES, found=found)

    # --- reports ----------------------------------------------------------------------

    async def readable_reports(request: Request) -> list[str]:
        """The reports whose DAG the user may read; 401 without a login, 403 if none."""
        allowed, refusal = [], None
        for report, dag_id in REPORT_DAGS.items():
            try:
                await authorize(request, dag_id)
            except HTTPException as exc:
                if exc.status_code != status.HTTP_403_FORBIDDEN:
                    raise
                refusal = exc
                continue
            allowed.append(report)
        if not allowed and refusal is not None:
            raise refusal
        return allowed

    @app.get("/reports", response_class=HTMLResponse)
    async def reports(request: Request) -> Response:
        names = await readable_reports(request)
        dirs = await run_in_threadpool(reports_dirs)
        listed = []
        for name in names:
            days = await run_in_threadpool(list_days, dirs[name], name)
            listed.append(
                {
                    "name": name,
                    "title": REPORT_TITLES[name],
                    "dag_id": REPORT_DAGS[name],
                    "folder": str(dirs[name] / name),
                    "days": days,
                }
            )
        try:
            charts = await read(lambda tx: dashboard(tx.conn))
        except HTTPException:  # no state database here: the files are still listed
            charts = None
        if charts is not None:
            # Only what the user may read: each report's DAG decides.
            if "reconciliation" not in names:
                charts.update(recon_days=[], currencies=[], recon_chart=None, money_chart=None)
            if "fraud" not in names:
                charts.update(rules=[], fraud_chart=None, fraud_days=[])
            charts["recon_range"] = day_range([d.day for d in charts["recon_days"]])
            charts["fraud_range"] = day_range(charts["fraud_days"])
        return page(request, "reports.html", reports=listed, charts=charts)

    async def report_path(request: Request, report: str, day: str, fmt: str):
        if report not in REPORT_DAGS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such report.")
        parsed = parse_day(day)
        if parsed is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "The day must be YYYY-MM-DD.")
        await authorize(request, REPORT_DAGS[report])
        dirs = await run_in_threadpool(reports_dirs)
        path = report_file(dirs[report], report, parsed, fmt)
        if not await run_in_threadpool(path.is_file):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No {report} report for {day}.")
        return path, parsed

    @app.get("/reports/{report}/{day}.html")
    async def report_html(request: Request, report: str, day: str) -> Response:
        path, _ = await report_path(request, report, day, "html")
        # The report HTML is self-contained (inline CSS and SVG, no scripts): the CSP keeps it so.
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    @app.get("/reports/{report}/{day}.csv")
    async def report_csv(request: Request, report: str, day: str) -> Response:
        path, parsed = await report_path(request, report, day, "csv")
        return FileResponse(
            path,
            media_type="text/csv; charset=utf-8",
            filename=f"{report}-{parsed.isoformat()}.csv",
            headers=SECURITY_HEADERS,
        )

    # --- dead letters -----------------------------------------------------------------

    @app.get("/dead-letters", response_class=HTMLResponse)
    async def dead_letters(
        request: Request,
        source: str | None = Query(default=None, max_length=100),
        status_filter: str = Query(default="open", alias="status"),
        page_number: int = Query(default=1, alias="page", ge=1, le=1_000_000),
    ) -> Response:
        await authorize(request, DEAD_LETTERS_DAG)
        if status_filter not in STATUS_FILTERS:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"status must be one of {', '.join(STATUS_FILTERS)}."
            )
        source = source or None
        offset = (page_number - 1) * page_size

        def query(tx):
            rows, total = tx.page_dead_letters(
                source=source,
                status=None if status_filter == "any" else status_filter,
                offset=offset,
                limit=page_size,
            )
            return rows, total, tx.dead_letter_sources()

        rows, total, sources = await read(query)

        def page_url(number: int) -> str:
            params = {"source": source or "", "status": status_filter, "page": number}
            return f"{base(request)}/dead-letters?{urlencode(params)}"

        return page(
            request,
            "dead_letters.html",
            rows=rows,
            total=total,
            first=offset + 1,
            last=offset + len(rows),
            sources=sources,
            source=source or "",
            statuses=STATUS_FILTERS,
            status=status_filter,
            prev_url=page_url(page_number - 1) if page_number > 1 else None,
            next_url=page_url(page_number + 1) if offset + len(rows) < total else None,
        )

    @app.get("/dead-letters/{dead_letter_id}", response_class=HTMLResponse)
    async def dead_letter(request: Request, dead_letter_id: int) -> Response:
        await authorize(request, DEAD_LETTERS_DAG)
        found = await read(lambda tx: tx.get_dead_letter(dead_letter_id))
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such dead letter.")
        record_json = json.dumps(
            found.record, indent=2, sort_keys=True, ensure_ascii=False, default=str
        )
        return page(request, "dead_letter.html", d=found, record_json=record_json)

    # --- the mapping studio -----------------------------------------------------------

    if studio_authorize is None:
        if authorize is airflow_authorizer:
            studio_authorize = airflow_studio_authorizer
        else:

            async def studio_authorize(request: Request, dag_id: str, method: str) -> Any:
                return await authorize(request, dag_id)

    mount_studio(
        app,
        templates=templates,
        settings=studio or StudioSettings(),
        store=store,
        authorize=studio_authorize,
        base=base,
    )

    return app
