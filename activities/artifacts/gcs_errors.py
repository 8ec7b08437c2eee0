"""Cloud Storage's failures as ApplicationErrors: retryable or not, naming the bucket and the fix.

The twin of s3_errors.py for the google-cloud-storage client: a throttled or unreachable
Cloud Storage is retried; a missing bucket or a refused permission stops the run with the
permission to grant (infra/gcp/storage-role.yaml holds the role).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as google_errors
from google.auth import exceptions as google_auth_errors
from requests import exceptions as requests_errors
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType


@contextmanager
def gcs_errors(bucket: str, doing: str, permission: str) -> Iterator[None]:
    """`doing` says what was attempted ("reading gs://b/p/x"); `permission` the IAM
    permission it needs (storage.objects.get ...), so a 403 carries its own fix."""
    try:
        yield
    except google_errors.NotFound as exc:
        if "bucket" in str(exc).lower() and "object" not in str(exc).lower():
            raise ApplicationError(
                f"Cloud Storage bucket {bucket!r} does not exist ({doing}). Fix: create it, or correct the "
                "runbook URI naming it (spec.models[].artifacts / archive, spec.drills.evidence).",
                type=ErrorType.NO_SUCH_BUCKET,
                non_retryable=True,
            ) from None
        raise
    except (google_errors.Forbidden, google_errors.Unauthorized) as exc:
        raise ApplicationError(
            f"access denied to Cloud Storage bucket {bucket!r} ({doing}): {exc.message}. Fix: grant the "
            f"worker's service account {permission} on gs://{bucket} (the drpilotArtifacts role in "
            "infra/gcp/storage-role.yaml), or check its credentials.",
            type=ErrorType.ACCESS_DENIED,
            non_retryable=True,
        ) from None
    except (google_errors.TooManyRequests, google_errors.ServerError) as exc:
        raise ApplicationError(
            f"Cloud Storage is throttling or failing ({exc.code}) while {doing}; will retry: {exc.message}",
            type=ErrorType.GCS_UNAVAILABLE,
        ) from None
    except google_errors.GoogleAPICallError as exc:
        raise ApplicationError(
            f"Cloud Storage refused {doing}: {exc.code} {exc.message}",
            type=ErrorType.gcs_refused(int(exc.code or 0)),
            non_retryable=True,
        ) from None
    except google_auth_errors.DefaultCredentialsError:
        raise ApplicationError(
            f"no Google Application Default Credentials for Cloud Storage while {doing}: give the worker "
            "a service account (GOOGLE_APPLICATION_CREDENTIALS, or workload identity), or run "
            "`gcloud auth application-default login`",
            type=ErrorType.GCS_NO_CREDENTIALS,
            non_retryable=True,
        ) from None
    except (requests_errors.ConnectionError, requests_errors.Timeout) as exc:
        raise ApplicationError(
            f"cannot reach Cloud Storage while {doing}: {exc}; will retry", type=ErrorType.GCS_UNREACHABLE
        ) from None
