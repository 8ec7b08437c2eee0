"""Verify a model version's copy against its manifest, file by file, in parallel.

The manifest (`model.manifest` under each prefix, format in manifest.py) is the truth about
a model version. A file is checked against it by size, then by what its store already knows
(S3: its full-object or composite checksum, or its ETag; Cloud Storage: its CRC32C, and the
MD5 of a non-composite object) without reading the body; the body is read and hashed only
where the store holds nothing the manifest records, or for every file when the model says
`verify: deep`. The activity heartbeats per file and per chunk read, and a retried
attempt skips the files an earlier one judged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from activities.artifacts.manifest import Manifest, ManifestEntry
from activities.artifacts.objects import ARCHIVED_CLASSES, Location, ObjectStore, restore_state
from activities.artifacts.progress import Beat, parallel
from activities.contracts import ArtifactProblem, VerifyResult
from drpilot.domain.runbook import Model

# The digests a deep check can hash a body against, strongest first.
_BODY_DIGESTS = ("sha256", "crc32c", "md5", "crc32")


class VerifyProgress(BaseModel):
    """Heartbeat details of verify: the files already judged, so a retry skips them."""

    checked: list[str] = Field(default_factory=list)  # confirmed against the manifest
    problems: list[ArtifactProblem] = Field(default_factory=list)


class Verifier:
    def __init__(self, objects: ObjectStore, workers: int):
        self.objects = objects
        self.workers = workers

    def verify(
        self,
        model: Model,
        where: Location,
        region: str,
        manifest: Manifest | None = None,
        *,
        progress: VerifyProgress | None = None,
        beat: Beat | None = None,
    ) -> tuple[VerifyResult, Manifest | None]:
        """Check `where` against its own manifest (or the one given); never raises for content.

        `progress` holds what an earlier attempt judged (skipped here) and receives each
        file's verdict; `beat` heartbeats the caller's progress per file and per chunk.
        """
        progress = progress if progress is not None else VerifyProgress()
        beat = beat if beat is not None else Beat()
        listed = self.objects.listed(where)
        problems: list[ArtifactProblem] = []
        if manifest is None:
            manifest, problem = self.read_manifest(where, model.manifest, listed)
            if problem is not None:
                problems.append(problem)
        hashed = 0
        if manifest is not None:
            judged = set(progress.checked) | {p.key for p in progress.problems}
            todo = [e for e in manifest.files if e.path not in judged and where.uri(e.path) not in judged]
            deep = model.verify == "deep"

            def record(entry: ManifestEntry, verdict: tuple[ArtifactProblem | None, bool]) -> None:
                nonlocal hashed
                problem, read = verdict
                hashed += read
                with beat.lock:
                    if problem is None:
                        progress.checked.append(entry.path)
                    else:
                        progress.problems.append(problem)
                beat()

            parallel(
                self.workers, todo, lambda e: self.check(where, e, listed.get(e.path), deep, beat), record
            )
            order = {where.uri(e.path): i for i, e in enumerate(manifest.files)}
            problems += sorted(progress.problems, key=lambda p: order.get(p.key, len(order)))
        result = VerifyResult(
            region=region,
            model=model.name,
            version=model.version,
            files=len(manifest.files) if manifest else 0,
            bytes=manifest.bytes if manifest else 0,
            problems=problems,
            manifest_created_at=listed[model.manifest].get("LastModified") if model.manifest in listed else None,
            hashed=hashed,
        )
        return result, manifest

    def read_manifest(
        self, where: Location, name: str, listed: dict[str, dict[str, Any]]
    ) -> tuple[Manifest | None, ArtifactProblem | None]:
        if name not in listed:
            return None, ArtifactProblem(
                key=where.uri(name), problem="missing", detail="no manifest"
            )
        archived = listed[name].get("StorageClass") in ARCHIVED_CLASSES
        if archived and self.objects.state_of(where, name) not in ("readable", None):
            return None, ArtifactProblem(
                key=where.uri(name), problem="archived", detail="manifest is in Glacier"
            )
        body = self.objects.read(where, name)
        try:
            return Manifest.model_validate_json(body), None
        except ValueError as exc:
            detail = f"not a valid manifest: {str(exc).splitlines()[0]}"
            return None, ArtifactProblem(key=where.uri(name), problem="corrupt", detail=detail)

    def check(
        self,
        where: Location,
        entry: ManifestEntry,
        listed: dict[str, Any] | None,
        deep: bool = False,
        beat: Beat | None = None,
    ) -> tuple[ArtifactProblem | None, bool]:
        """(the file's problem or None, whether its body was read)."""
        key = where.uri(entry.path)
        if listed is None:
            return ArtifactProblem(key=key, problem="missing"), False
        if listed["Size"] != entry.size:
            detail = f"size {listed['Size']}, manifest says {entry.size}"
            return ArtifactProblem(key=key, problem="corrupt", detail=detail), False
        head = self.objects.head(where, entry.path)
        if head is None:  # deleted between the listing and now
            return ArtifactProblem(key=key, problem="missing"), False
        if restore_state(head) != "readable":
            detail = f"storage class {head.get('StorageClass')}"
            return ArtifactProblem(key=key, problem="archived", detail=detail), False
        verdict = self.objects.confirm(where, entry, head)
        if verdict is not None and not verdict[0]:
            return ArtifactProblem(key=key, problem="corrupt", detail=verdict[1]), False
        if verdict is not None and not deep:
            return None, False
        # The strongest digest the manifest records, to hash the body against.
        algorithm = next((a for a in _BODY_DIGESTS if getattr(entry, a) is not None), None)
        if algorithm is None:
            if verdict is not None:  # deep, but nothing to hash against: the store's word stands
                return None, False
            detail = (
                f"{where.store} holds no checksum or ETag this manifest records, and it has no digest "
                "to hash the body against. Fix: regenerate it with `drpilot artifacts manifest --write`"
            )
            return ArtifactProblem(key=key, problem="corrupt", detail=detail), False
        found = self.objects.hash(where, entry.path, beat or Beat(), algorithm)
        expected = str(getattr(entry, algorithm))
        if found != (expected.lower() if algorithm == "sha256" else expected):
            detail = f"{algorithm} {found}, manifest says {expected}"
            return ArtifactProblem(key=key, problem="corrupt", detail=detail), True
        return None, True


def summary(result: VerifyResult) -> str:
    counts: dict[str, int] = {}
    for p in result.problems:
        counts[p.problem] = counts.get(p.problem, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no problems"


def problem_keys(result: VerifyResult) -> str:
    return "; ".join(
        f"{p.key} ({p.problem}{': ' + p.detail if p.detail else ''})" for p in result.problems
    )
