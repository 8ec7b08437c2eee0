"""`drpilot artifacts ...`: the checksum manifest of a model version already in S3 or Cloud Storage.

`manifest` describes every object under a prefix with what its store already knows of it
(S3: size, full-object CRC, the parts of a multipart upload, ETag; Cloud Storage: size, CRC32C,
MD5), reading a body only for objects the store keeps no checksum of, so verification later
needs no reads either (activities/artifacts/manifest.py).
"""

from __future__ import annotations

import json

import typer
from temporalio.exceptions import ApplicationError

from activities.artifacts.activities import ArtifactActivities
from activities.artifacts.objects import Location
from drpilot.cli.terminal import err

app = typer.Typer(help="Model artifacts in S3 or Cloud Storage: write checksum manifests.", no_args_is_help=True)


@app.command("manifest")
def manifest(
    prefix: str = typer.Argument(..., help="s3://bucket/prefix/ or gs://bucket/prefix/ holding one model version."),
    name: str = typer.Option("manifest.json", "--name", help="The manifest's file name (spec.models[].manifest)."),
    model: str = typer.Option(None, "--model", help="Model name recorded in the manifest."),
    version: str = typer.Option(None, "--version", help="Model version recorded in the manifest."),
    write: bool = typer.Option(False, "--write", help="Upload it as PREFIX/NAME instead of printing it."),
) -> None:
    """Print (or --write) the manifest of the objects under PREFIX."""
    from drpilot.domain.settings import SettingsError, load_settings

    if not prefix.startswith(("s3://", "gs://")) or len(prefix) <= len("s3://"):
        err.print(
            f"error: {prefix!r} is not an S3 or Cloud Storage URI. Fix: give s3://bucket/prefix/ or gs://bucket/prefix/",
            markup=False,
        )
        raise typer.Exit(2)
    try:
        artifacts = ArtifactActivities.from_settings(load_settings())
    except SettingsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    where = Location.parse(prefix)
    try:
        described, hashed = artifacts.manifest_of(where, name)
    except ApplicationError as exc:
        err.print(f"error: {exc.message}", markup=False)
        raise typer.Exit(1) from None
    if not described.files:
        err.print(f"error: no objects under {where.uri()}. Fix: check the prefix", markup=False)
        raise typer.Exit(1)
    document = described.model_copy(update={"model": model, "version": version})
    body = json.dumps(document.model_dump(exclude_none=True), indent=2) + "\n"
    if hashed:
        err.print(f"note: read and hashed {hashed} object(s) {where.store} keeps no checksum of", markup=False)
    if not write:
        typer.echo(body, nl=False)
        return
    try:
        artifacts.put_manifest(where, name, body.encode())
    except ApplicationError as exc:
        err.print(f"error: {exc.message}", markup=False)
        raise typer.Exit(1) from None
    err.print(f"wrote {where.uri(name)}: {len(described.files)} file(s), {described.bytes} bytes", markup=False)
