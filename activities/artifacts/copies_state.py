"""What a copy in flight keeps in its activity's heartbeat, so a retried attempt resumes it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CopiedPart(BaseModel):
    number: int
    etag: str
    checksums: dict[str, str] = Field(default_factory=dict)  # e.g. ChecksumSHA256 -> value


class Upload(BaseModel):
    """A copy in flight: an S3 multipart upload (`upload_id`, its part size and the parts
    done), a Cloud Storage rewrite (`rewrite_token`) or resumable upload (`session_url`),
    with bytes done of `size`."""

    upload_id: str = ""
    part_size: int = 0
    parts: list[CopiedPart] = Field(default_factory=list)
    rewrite_token: str | None = None
    session_url: str | None = None
    bytes_done: int = 0
    size: int = 0
