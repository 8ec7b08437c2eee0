"""Copy a file inside Cloud Storage with a server-side rewrite, resumable by its token.

Cloud Storage may answer a rewrite of a large object (or one between locations or storage
classes) in several calls: each reply says how many bytes are done and carries a
`rewriteToken` to send with the next call (Cloud Storage JSON API, "Objects: rewrite"). The
token goes into the caller's heartbeat (`Upload.rewrite_token`), so a retried activity
continues the rewrite where the killed one stopped instead of starting over.
"""

from __future__ import annotations

from google.api_core import exceptions as google_errors
from temporalio import activity

from activities.artifacts.copies_state import Upload
from activities.artifacts.gcs import GcsObjects
from activities.artifacts.gcs_errors import gcs_errors
from activities.artifacts.objects import Location
from activities.artifacts.progress import Beat


def rewrite(gcs: GcsObjects, source: Location, target: Location, path: str, uploads: dict[str, Upload], beat: Beat) -> bool:
    """Rewrite `source`'s `path` onto `target`'s, resuming the token `uploads` names; False
    when the source does not exist (nothing to copy from)."""
    upload = uploads.get(path)
    token = upload.rewrite_token if upload is not None else None
    source_blob = gcs.blob(source, path)
    doing = f"rewriting {source.uri(path)} to {target.uri(path)}"
    while True:
        destination = gcs.blob(target, path)
        # Copies restored from an Archive / Coldline bucket are STANDARD, as S3's are.
        destination.storage_class = "STANDARD"
        with gcs_errors(target.bucket, doing, "storage.objects.get on the source and storage.objects.create"):
            try:
                token, done, total = destination.rewrite(source_blob, token=token)
            except google_errors.NotFound:
                if source_blob.exists():
                    raise  # the target bucket is missing: gcs_errors says so
                uploads.pop(path, None)
                return False
            except google_errors.BadRequest:
                if token is None:
                    raise
                # A token outlives neither a change of its source nor a week: start over.
                activity.logger.warning("rewrite token of %s refused; starting the rewrite again", path)
                token = None
                continue
        if token is None:
            with beat.lock:
                uploads.pop(path, None)
            beat()
            return True
        with beat.lock:
            uploads[path] = Upload(rewrite_token=token, bytes_done=int(done), size=int(total))
        beat()
