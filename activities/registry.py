"""Every activity drpilot registers, built with real clients from settings + environment.

The one place the worker gets its activities from: `source DIR/env` of a sandbox points
these same clients at the twin, and production's environment at the clouds. A drill's claim
and a readiness check's previous verdict are answered by the front door, which the worker
hands in (`admit`, `previous`): this layer never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.artifacts.activities import ArtifactActivities
from activities.blocks.aurora import AuroraActivities
from activities.blocks.http import HttpBlockActivities
from activities.blocks.jobs import JobActivities
from activities.dns.activities import DnsActivities
from activities.drills import DrillActivities
from activities.front_door import Admit, FrontDoorActivities, Previous
from activities.kube.activities import KubeActivities
from activities.kube.clusters import load_api_classes
from activities.notify import NotifyActivities
from activities.probes.activities import ProbeActivities
from activities.rehearsal import RehearsalActivities
from activities.standby import StandbyActivities
from activities.velero import VeleroActivities
from drpilot.domain.settings import Settings

ACTIVITY_CLASSES = (
    DnsActivities, KubeActivities, VeleroActivities, ArtifactActivities, ProbeActivities, NotifyActivities,
    DrillActivities, RehearsalActivities, StandbyActivities, AuroraActivities, JobActivities, HttpBlockActivities,
)


def build_activities(
    settings: Settings, *, admit: Admit | None = None, previous: Previous | None = None
) -> list[Callable[..., Any]]:
    """Bound activity methods of every class, each class built once from `settings`; the
    claim and the previous verdict when the front door's `admit` and `previous` are given."""
    load_api_classes()
    built = [method for cls in ACTIVITY_CLASSES for method in cls.from_settings(settings).all()]
    return built + FrontDoorActivities(admit=admit, previous=previous).all()
