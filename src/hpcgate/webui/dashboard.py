"""The dashboard: the systems and their health, each one's nodes in use (a chart), and the
caller's running and recent jobs."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hpcgate.cluster import Cluster
from hpcgate.model.errors import HpcgateError
from hpcgate.model.jobs import Job, JobState
from hpcgate.model.principal import Scope
from hpcgate.webui.chart import Chart, chart
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter()
RECENT = 10
LIVE = [JobState.PENDING, JobState.RUNNING, JobState.SUSPENDED]


@dataclass
class SystemView:
    cluster: Cluster
    chart: Chart | None
    chart_error: str | None
    live: list[Job]
    recent: list[Job]


async def _system(viewer: Viewer, cluster: Cluster) -> SystemView:
    target = viewer.target(cluster.name)
    drawn, error = None, None
    try:
        drawn = chart(await viewer.gateway.status.nodes(target))
    except HpcgateError as exc:
        error = exc.detail
    jobs = viewer.gateway.jobs
    live = (await jobs.list(target, LIVE, None, None, RECENT)).items
    recent = (await jobs.list(target, [], None, None, RECENT)).items
    return SystemView(cluster, drawn, error, live, recent)


@router.get("/dashboard")
async def dashboard(request: Request, viewer: ViewerDep) -> Response:
    viewer.who.require(Scope.JOBS_READ)  # as GET /api/v1/systems
    views = [await _system(viewer, cluster) for cluster in viewer.gateway.systems]
    return page(request, "dashboard.html", viewer.session, systems=views, who=viewer.who)
