"""The live dashboard: the page at ``/`` and ``/dashboard``, its changing part, and its figures as JSON.

``GET /dashboard/metrics.json`` is every figure of the page (``emr.hub.dashboard.metrics``);
the page's script polls it and fetches ``GET /dashboard/live`` again only when its
``version`` changes. ``?lang=vi|en`` picks the language (Vietnamese by default) and
``?refresh=N`` the polling interval in seconds.
"""

from __future__ import annotations

from typing import Literal

import orjson
import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from emr.adoption import Deadline, parse_national
from emr.errors import DataFileError
from emr.hub.dashboard import metrics
from emr.hub.db import read_transaction
from emr.hub.http import Hub, hub_of

router = APIRouter()

Lang = Literal["vi", "en"]
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
@router.get("/dashboard", response_class=HTMLResponse)
async def page(request: Request, lang: Lang = "vi", refresh: int = Query(5, ge=1, le=3600)) -> HTMLResponse:
    from emr.reports.dashboard import render_page

    hub = hub_of(request)

    def work() -> str:
        return render_page(_figures(hub), lang=lang, refresh=refresh, deadlines=_deadlines(hub), updated=hub.clock())

    return HTMLResponse(await run_in_threadpool(work), headers=NO_STORE)


@router.get("/dashboard/live", response_class=HTMLResponse)
async def live(request: Request, lang: Lang = "vi") -> HTMLResponse:
    from emr.reports.dashboard import render_live

    hub = hub_of(request)

    def work() -> str:
        return render_live(_figures(hub), lang=lang, deadlines=_deadlines(hub), updated=hub.clock())

    return HTMLResponse(await run_in_threadpool(work), headers=NO_STORE)


@router.get("/dashboard/metrics.json")
async def figures(request: Request) -> Response:
    hub = hub_of(request)
    body = await run_in_threadpool(_figures, hub)
    return Response(orjson.dumps(body), media_type="application/json", headers=NO_STORE)


def _figures(hub: Hub) -> dict:
    with read_transaction(hub.engine) as conn:
        return metrics(conn, facilities=hub.catalogue.facilities, tests=hub.catalogue.tests)


def _deadlines(hub: Hub) -> tuple[Deadline, ...]:
    """The EMR deadlines of ``data/adoption-national.yaml``, read per page (a small file)."""
    path = hub.settings.data_dir / "adoption-national.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DataFileError(f"{path} cannot be read: {' '.join(str(error).split())}") from error
    return parse_national(document, where=f"data/{path.name}").deadlines
