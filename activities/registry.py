"""Every activity drpilot registers, built with real clients from settings + environment.

The one place the worker gets its activities from: `source DIR/env` of a sandbox points
these same clients at the twin, and production's environment at the clouds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.artifacts.activities import ArtifactActivities
from activities.clock import ClockActivities
from activities.dns.activities import DnsActivities
from activities.drills import DrillActivities
from activities.kube import KubeActivities
from activities.notify import NotifyActivities
from activities.probes.activities import ProbeActivities
from activities.velero import VeleroActivities
from drpilot.domain.settings import Settings

ACTIVITY_CLASSES = (
    DnsActivities, KubeActivities, VeleroActivities, ArtifactActivities, ProbeActivities, NotifyActivities,
    DrillActivities, ClockActivities,
)


def build_activities(settings: Settings) -> list[Callable[..., Any]]:
    """Bound activity methods of every class, each class built once from `settings`."""
    return [method for cls in ACTIVITY_CLASSES for method in cls.from_settings(settings).all()]
