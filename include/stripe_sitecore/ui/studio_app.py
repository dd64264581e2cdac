"""The mapping studio's routes, added to the UI app (``/stripe-sitecore/ui/studio``).

Pages (HTML, the page's script and style from ``static/``):

- ``GET /studio``: the mappings the user may read;
- ``GET /studio/m/{name}``: the editor.

JSON API used by the page (every route checks the Airflow login and the DAG's permission first;
errors are ``{"error": ..., "problems": [...]}``):

- ``GET  /studio/api/mappings/{name}``: the YAML, its sha256, the fields/rules/lookups with their
  lines, problems, the records to try (samples, recent, dead letters), dead-letter replay facts;
- ``POST /studio/api/mappings/{name}/preview`` ``{yaml, record}``: payload, outcome, validation;
- ``POST /studio/api/mappings/{name}/edit`` ``{yaml, edit, record}``: the edited YAML + preview;
- ``POST /studio/api/mappings/{name}/suggest`` ``{yaml, record, target?}``: suggestions;
- ``POST /studio/api/mappings/{name}/feedback`` ``{source, target, verdict}``: remember it (edit);
- ``POST /studio/api/mappings/{name}/diff`` ``{yaml}``: the unified diff against the file;
- ``POST /studio/api/mappings/{name}/save`` ``{yaml, base_sha}``: write the file (edit; only where
  ``[stripe_sitecore] studio_write`` is on);
- ``POST /studio/mappings/{name}/download`` (form ``yaml``): the formatted YAML as a file;
- ``POST /studio/api/draft`` ``{name, source_kind, target_kind, source_json, target_json}``: a
  new mapping drafted from two sample payloads.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from stripe_sitecore.mapping.edit import EditError, apply_edit
from stripe_sitecore.mapping.errors import MappingError
from stripe_sitecore.ui import studio
from stripe_sitecore.ui.studio_auth import StudioAuthorizer

if TYPE_CHECKING:
    from jinja2 import Environment

    from stripe_sitecore.store.state import StateStore

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {"studio.js": "text/javascript", "studio.css": "text/css"}
# The studio runs its own script (from this app only) and calls this app and Airflow's REST API
# (same origin); still nothing from elsewhere, framed only by Airflow's UI.
STUDIO_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
STUDIO_HEADERS = {
    "Content-Security-Policy": STUDIO_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_BODY = 2 * 1024 * 1024
UI_PREFIX = "/stripe-sitecore/ui"


def _json(value: Any, status_code: int = 200) -> Response:
    body = json.dumps(value, default=_default, ensure_ascii=False)
    return Response(body, status_code, media_type="application/json", headers=STUDIO_HEADERS)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _error(exc: studio.StudioError) -> Response:
    return _json({"error": exc.detail, **exc.extra}, exc.status)


_warm = threading.Event()


def _warm_up_validation() -> None:
    """Import GX and build its context once, off the request path (seconds, once a process)."""
    if _warm.is_set():
        return
    _warm.set()

    def run() -> None:
        try:
            from stripe_sitecore.validation import validate_batch

            # One row, so GX is imported and its context built (an empty batch returns early).
            payload = {"amount": 100, "currency": "usd", "metadata": {"sitecore_order_id": "w"}}
            validate_batch("payment_intent_create", [("warm-up", payload)], build_data_docs=False)
        except Exception:  # noqa: BLE001 - only a warm-up
            log.debug("studio validation warm-up failed", exc_info=True)

    threading.Thread(target=run, name="studio-gx-warm-up", daemon=True).start()


def mount_studio(
    app: FastAPI,
    *,
    templates: Environment,
    settings: studio.StudioSettings,
    store: Callable[[], StateStore] | None,
    authorize: StudioAuthorizer,
    base: Callable[[Request], str],
) -> None:
    def airflow_base(request: Request) -> str:
        return base(request).removesuffix(UI_PREFIX)

    async def allow(request: Request, name: str, method: str = "GET") -> studio.Owner:
        owner = studio.owner_of(name)
        for dag_id in owner.dags:
            await authorize(request, dag_id, method)
        return owner

    async def may(request: Request, dag_id: str, method: str) -> bool:
        try:
            await authorize(request, dag_id, method)
        except HTTPException as exc:
            if exc.status_code == status.HTTP_403_FORBIDDEN:
                return False
            raise
        return True

    async def may_all(request: Request, owner: studio.Owner, method: str) -> bool:
        for dag_id in owner.dags:
            if not await may(request, dag_id, method):
                return False
        return True

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise studio.StudioError(413, f"The request is larger than {MAX_BODY} bytes.")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise studio.StudioError(400, "The request body must be JSON.") from None
        if not isinstance(data, dict):
            raise studio.StudioError(400, "The request body must be a JSON object.")
        return data

    def text_of(data: dict[str, Any]) -> str:
        text = data.get("yaml")
        if not isinstance(text, str):
            raise studio.StudioError(400, "yaml (the mapping's text) is required.")
        return text

    def api(method: str = "GET"):
        """A JSON route: the login and the mapping's DAG permission first, errors as JSON."""

        def decorate(handler):
            async def route(request: Request, name: str) -> Response:
                try:
                    studio.check_name(name)
                    owner = await allow(request, name, method)
                    return await handler(request, name, owner)
                except HTTPException as exc:
                    return _json({"error": exc.detail}, exc.status_code)
                except studio.StudioError as exc:
                    return _error(exc)

            route.__name__ = handler.__name__
            return route

        return decorate

    def page(request: Request, template: str, **values: Any) -> Response:
        html = templates.get_template(template).render(base=base(request), **values)
        return HTMLResponse(html, headers=STUDIO_HEADERS)

    # --- pages ---------------------------------------------------------------------------------

    @app.get("/studio", response_class=HTMLResponse)
    async def studio_index(request: Request) -> Response:
        names = await run_in_threadpool(studio.list_mappings, settings)
        readable, refusal = [], None
        for name in names:
            owner = studio.owner_of(name)
            try:
                for dag_id in owner.dags:
                    await authorize(request, dag_id, "GET")
            except HTTPException as exc:
                if exc.status_code != status.HTTP_403_FORBIDDEN:
                    raise
                refusal = exc
                continue
            readable.append({"name": name, "dags": owner.dags})
        if not readable and refusal is not None:
            raise refusal
        return page(
            request,
            "studio_index.html",
            mappings=readable,
            write_enabled=settings.write_enabled(),
        )

    @app.get("/studio/m/{name}", response_class=HTMLResponse)
    async def studio_editor(request: Request, name: str) -> Response:
        try:
            studio.check_name(name)
        except studio.StudioError as exc:
            raise HTTPException(exc.status, exc.detail) from None
        owner = await allow(request, name)
        if settings.validate:
            _warm_up_validation()
        return page(
            request,
            "studio.html",
            name=name,
            dags=owner.dags,
            airflow_base=airflow_base(request),
        )

    @app.get("/studio/static/{file}")
    async def studio_static(file: str) -> Response:
        if file not in STATIC_FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such file.")
        return FileResponse(
            STATIC_DIR / file, media_type=STATIC_FILES[file], headers=STUDIO_HEADERS
        )

    # --- the JSON API --------------------------------------------------------------------------

    async def dead_letters_allowed(request: Request) -> bool:
        return await may(request, studio.REPLAY_DAG, "GET")

    async def chosen_record(request: Request, name: str, text: str, ref: Any) -> dict[str, Any]:
        source_kind = await run_in_threadpool(source_kind_of, text, name)
        allowed = await dead_letters_allowed(request)
        return await run_in_threadpool(
            studio.resolve_record, settings, store, name, source_kind, ref,
            dead_letters_allowed=allowed,
        )  # fmt: skip

    def source_kind_of(text: str, name: str) -> str:
        try:
            return studio.document_view(text, str(studio.mapping_path(settings, name)))["source"]
        except MappingError:
            # A text that is not YAML yet: the file on disk says what a record is.
            disk = studio.read_text(settings, name)
            return studio.document_view(disk, name)["source"]

    def previewed(text: str, name: str, record: dict[str, Any]) -> dict[str, Any]:
        file = str(studio.mapping_path(settings, name))
        out: dict[str, Any] = {"yaml": text}
        try:
            out["view"] = studio.document_view(text, file)
        except MappingError as exc:
            out["view"] = None
            out["preview"] = {"problems": studio.problems_of(exc), "outcome": None}
            return out
        out["preview"] = studio.preview(text, file, record, validate=settings.validate)
        out["record_fields"] = studio.record_fields(record)
        return out

    @app.get("/studio/api/mappings/{name}")
    @api("GET")
    async def studio_mapping(request: Request, name: str, owner: studio.Owner) -> Response:
        text = await run_in_threadpool(studio.read_text, settings, name)
        file = str(studio.mapping_path(settings, name))
        try:
            view = await run_in_threadpool(studio.document_view, text, file)
        except MappingError as exc:
            return _json(
                {"error": "The file is not YAML.", "problems": studio.problems_of(exc)}, 422
            )
        _, problems = await run_in_threadpool(studio.compile_text, text, file)
        allowed = await dead_letters_allowed(request)
        found = await run_in_threadpool(
            studio.records, settings, store, name, view["source"], dead_letters_allowed=allowed
        )
        from stripe_sitecore.dead_letters.registry import REPLAYABLE_SOURCES
        from stripe_sitecore.mapping.transforms import REGISTRY

        open_count = None
        if owner.dead_letter_source and store is not None and allowed:
            try:
                counts = await run_in_threadpool(lambda: _open_counts(store()))
                open_count = counts.get(owner.dead_letter_source, 0)
            except Exception:  # noqa: BLE001 - the count is a nicety
                open_count = None
        return _json(
            {
                "name": name,
                "yaml": text,
                "sha": studio.sha(text),
                "view": view,
                "problems": problems,
                "records": {
                    group: [{"ref": i["ref"], "label": i["label"]} for i in found[group]]
                    for group in ("samples", "recent", "dead_letters")
                },
                "store_error": found["store_error"],
                "transforms": sorted(REGISTRY),
                "target_example": studio.target_example(view["target"]) is not None,
                "write_enabled": settings.write_enabled(),
                "can_edit": await may_all(request, owner, "PUT"),
                "dags": list(owner.dags),
                "dead_letters": {
                    "source": owner.dead_letter_source,
                    "open": open_count,
                    "readable": allowed,
                    "replayable": owner.dead_letter_source in REPLAYABLE_SOURCES,
                    "dag_id": studio.REPLAY_DAG,
                    "trigger_url": (
                        f"{airflow_base(request)}/api/v2/dags/{studio.REPLAY_DAG}/dagRuns"
                    ),
                    "dag_url": f"{airflow_base(request)}/dags/{studio.REPLAY_DAG}",
                    "conf": {"source": owner.dead_letter_source},
                },
            }
        )

    @app.post("/studio/api/mappings/{name}/preview")
    @api("GET")
    async def studio_preview(request: Request, name: str, owner: studio.Owner) -> Response:
        data = await body(request)
        text = text_of(data)
        record = await chosen_record(request, name, text, data.get("record"))
        return _json(await run_in_threadpool(previewed, text, name, record))

    @app.post("/studio/api/mappings/{name}/edit")
    @api("GET")
    async def studio_edit(request: Request, name: str, owner: studio.Owner) -> Response:
        # Editing only changes the page's copy: reading is enough; saving needs edit access.
        data = await body(request)
        text = text_of(data)
        file = str(studio.mapping_path(settings, name))
        try:
            edited = await run_in_threadpool(apply_edit, text, data.get("edit"), file)
        except EditError as exc:
            return _json({"error": str(exc)}, 422)
        except MappingError as exc:
            return _json(
                {"error": "The YAML cannot be read.", "problems": studio.problems_of(exc)}, 422
            )
        record = await chosen_record(request, name, edited, data.get("record"))
        return _json(await run_in_threadpool(previewed, edited, name, record))

    @app.post("/studio/api/mappings/{name}/suggest")
    @api("GET")
    async def studio_suggest(request: Request, name: str, owner: studio.Owner) -> Response:
        data = await body(request)
        text = text_of(data)
        record = await chosen_record(request, name, text, data.get("record"))
        target = None
        if data.get("target"):
            try:
                target = json.loads(str(data["target"]), parse_float=Decimal)
            except ValueError as exc:
                raise studio.StudioError(400, f"the target sample is not JSON: {exc}") from None
            if isinstance(target, list) and target:
                target = target[0]
            if not isinstance(target, dict):
                raise studio.StudioError(400, "the target sample must be a JSON object")
        file = str(studio.mapping_path(settings, name))
        try:
            found = await run_in_threadpool(
                studio.suggestions, settings, text, file, record, target
            )
        except MappingError as exc:
            return _json(
                {"error": "The YAML cannot be read.", "problems": studio.problems_of(exc)}, 422
            )
        return _json(found)

    @app.post("/studio/api/mappings/{name}/feedback")
    @api("PUT")
    async def studio_feedback(request: Request, name: str, owner: studio.Owner) -> Response:
        data = await body(request)
        verdict, source, target = data.get("verdict"), data.get("source"), data.get("target")
        if verdict not in ("accepted", "rejected") or not all(
            isinstance(v, str) and v for v in (source, target)
        ):
            raise studio.StudioError(
                400, "feedback needs source, target and verdict (accepted or rejected)"
            )
        text = data.get("yaml") if isinstance(data.get("yaml"), str) else None
        if text is None:
            text = await run_in_threadpool(studio.read_text, settings, name)
        view = await run_in_threadpool(studio.document_view, text, name)
        memory = settings.memory()
        await run_in_threadpool(
            lambda: memory.record(
                verdict, source_kind=view["source"], target_kind=view["target"],
                source=source, target=target,
            )
        )  # fmt: skip
        return _json({"recorded": verdict, "source": source, "target": target})

    @app.post("/studio/api/mappings/{name}/diff")
    @api("GET")
    async def studio_diff(request: Request, name: str, owner: studio.Owner) -> Response:
        data = await body(request)
        text = text_of(data)
        path = studio.mapping_path(settings, name)
        current = await run_in_threadpool(
            lambda: path.read_text(encoding="utf-8") if path.exists() else ""
        )
        formatted = await run_in_threadpool(studio.formatted, text, str(path))
        _, problems = await run_in_threadpool(studio.compile_text, formatted, str(path))
        return _json(
            {
                "diff": studio.diff(current, formatted, name),
                "formatted": formatted,
                "problems": problems,
                "sha": studio.sha(current) if path.exists() else None,
                "write_enabled": settings.write_enabled(),
                "can_edit": await may_all(request, owner, "PUT"),
            }
        )

    @app.post("/studio/api/mappings/{name}/save")
    @api("PUT")
    async def studio_save(request: Request, name: str, owner: studio.Owner) -> Response:
        data = await body(request)
        text = text_of(data)
        base_sha = data.get("base_sha")
        if base_sha is not None and not isinstance(base_sha, str):
            raise studio.StudioError(400, "base_sha must be the sha256 the page started from")
        return _json(await run_in_threadpool(studio.save, settings, name, text, base_sha))

    @app.post("/studio/mappings/{name}/download")
    async def studio_download(request: Request, name: str) -> Response:
        try:
            studio.check_name(name)
        except studio.StudioError as exc:
            raise HTTPException(exc.status, exc.detail) from None
        await allow(request, name)
        form = await request.form()
        text = form.get("yaml")
        if not isinstance(text, str):
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "yaml (the mapping's text) is required."
            )
        path = studio.mapping_path(settings, name)
        try:
            checked = await run_in_threadpool(studio.checked_for_saving, text, name, str(path))
        except studio.StudioError as exc:
            detail = exc.detail + "".join(
                f"\nline {p.get('line')}: {p.get('where')}: {p.get('message')}"
                for p in exc.extra.get("problems", [])
            )
            raise HTTPException(exc.status, detail) from None
        return Response(
            checked,
            media_type="application/yaml; charset=utf-8",
            headers={
                **STUDIO_HEADERS,
                "Content-Disposition": f'attachment; filename="{name}.yaml"',
            },
        )

    @app.post("/studio/api/draft")
    async def studio_draft(request: Request) -> Response:
        try:
            data = await body(request)
            name = studio.check_name(str(data.get("name", "")))
            for dag_id in studio.ALL_DAGS:
                await authorize(request, dag_id, "GET")
            samples = []
            for key in ("source_json", "target_json"):
                try:
                    sample = json.loads(str(data.get(key, "")), parse_float=Decimal)
                except ValueError as exc:
                    raise studio.StudioError(400, f"{key} is not JSON: {exc}") from None
                if isinstance(sample, list) and sample:
                    sample = sample[0]
                if not isinstance(sample, dict):
                    raise studio.StudioError(400, f"{key} must be a JSON object")
                samples.append(sample)
            kinds = [str(data.get(k) or "") for k in ("source_kind", "target_kind")]
            if not all(kinds):
                raise studio.StudioError(400, "source_kind and target_kind are required")
            text = await run_in_threadpool(
                studio.draft_mapping, name, kinds[0], kinds[1], samples[0], samples[1], settings
            )
            _, problems = await run_in_threadpool(studio.compile_text, text, f"{name}.yaml")
            return _json({"yaml": text, "problems": problems})
        except HTTPException as exc:
            return _json({"error": exc.detail}, exc.status_code)
        except studio.StudioError as exc:
            return _error(exc)


def _open_counts(store: StateStore) -> dict[str, int]:
    with store.begin() as tx:
        return tx.count_open_dead_letters()
