"""The scalar types of a runbook's fields, with the error texts a runbook author sees, and
the frozen base every section shares: here so the runbook (runbook.py) and its blocks
(blocks.py) both build on them without importing each other."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

# ---------------------------------------------------------------------------------------
# Scalar types with the error texts a runbook author sees.


def _positive_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise PydanticCustomError("positive_int", "expected a positive integer")


def _non_negative_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise PydanticCustomError("non_negative_int", "expected an integer >= 0")


def _text(value: object) -> str:
    # YAML turns unquoted 2024-01-15 into a date and 1.10 into 1.1: make the author quote.
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, str):
        raise PydanticCustomError("text", "expected a non-empty string")
    raise PydanticCustomError("text", "expected a string (quote it in YAML)")


def _pattern(regex: str, what: str):
    compiled = re.compile(regex)

    def check(value: object) -> str:
        if isinstance(value, str) and compiled.fullmatch(value):
            return value
        raise PydanticCustomError("pattern", f"expected {what}")

    return check


def _fraction(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise PydanticCustomError("fraction", "expected a number between 0 and 1 (0.01 = 1%)")


def _positive_number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            number = float(value)
        except OverflowError:  # an int beyond 1.8e308
            number = math.inf
        if math.isfinite(number):
            return number
        raise PydanticCustomError("positive_number", "expected a finite number greater than 0 (at most 1.8e308)")
    raise PydanticCustomError("positive_number", "expected a number greater than 0")


PositiveInt = Annotated[int, BeforeValidator(_positive_int), Field(json_schema_extra={"minimum": 1})]
NonNegativeInt = Annotated[
    int, BeforeValidator(_non_negative_int), Field(json_schema_extra={"minimum": 0})
]
Text = Annotated[str, BeforeValidator(_text)]
Fraction = Annotated[float, BeforeValidator(_fraction), Field(ge=0, le=1)]
PositiveNumber = Annotated[float, BeforeValidator(_positive_number), Field(gt=0)]
RegionName = Annotated[
    str,
    BeforeValidator(_pattern(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", "a region name like us-east-1")),
]
DnsName = Annotated[
    str,
    BeforeValidator(
        _pattern(r"([A-Za-z0-9_*]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+", "a fully qualified DNS name ending in '.'")
    ),
]
HttpUrl = Annotated[
    str, BeforeValidator(_pattern(r"https?://[^\s/]+(/\S*)?", "an http(s):// URL"))
]
# An object-store prefix: S3 (bucket names per the S3 user guide, "Bucket naming rules") or
# Cloud Storage (its rules also allow "_"), chosen by the scheme.
StorageUri = Annotated[
    str,
    BeforeValidator(
        _pattern(
            r"(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]|gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9])(/\S*)?",
            "an s3://bucket/prefix/ or gs://bucket/prefix/ URI",
        )
    ),
]
UrlPath = Annotated[str, BeforeValidator(_pattern(r"/\S*", "a URL path starting with '/'"))]
KubeName = Annotated[
    str,
    BeforeValidator(
        _pattern(r"[a-z0-9]([a-z0-9-]{0,251}[a-z0-9])?", "a Kubernetes name (lowercase, digits, '-')")
    ),
]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


EnvName = Annotated[str, BeforeValidator(_pattern(r"[A-Z_][A-Z0-9_]*", "an environment variable name like SLACK_WEBHOOK_URL"))]
