"""Alertmanager's webhook payload, version 4, as its webhook receiver sends it.

Unknown fields are ignored (Alertmanager adds fields within a version); the ones drpilot
decides on are required with their types, so a payload of the wrong shape is a 422 naming
the first wrong field, never a half-read alert.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from drpilot.domain.loader import format_loc


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime
    # "0001-01-01T00:00:00Z" while firing.
    endsAt: AwareDatetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


class Notification(_Payload):
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert]


def shape_problem(exc: ValidationError) -> str:
    """The first wrong field in one line: `alerts[0].startsAt: input should be ...`."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = format_loc(tuple(first["loc"])) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = first["msg"][:1].lower() + first["msg"][1:]
    return f"{where}: {message}{more}"
