"""S3's failures as ApplicationErrors: retryable or not, naming the bucket, and the fix.

Every S3 call an artifacts activity makes goes through `s3_errors`, so a throttled or
unreachable S3 is retried, and a missing bucket or a refused permission stops the run with
the IAM action to grant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType

_RETRYABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
}
_ACCESS_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


@contextmanager
def s3_errors(bucket: str, doing: str, permission: str) -> Iterator[None]:
    """Turn an S3 failure into a retryable or non-retryable ApplicationError naming the bucket.

    `doing` says what was attempted ("reading s3://b/p/x"); `permission` the IAM action it
    needs, so an AccessDenied message carries its own fix.
    """
    try:
        yield
    except ClientError as exc:
        code, status = error_code(exc), http_status(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code == "NoSuchBucket":
            raise ApplicationError(
                f"S3 bucket {bucket!r} does not exist ({doing}). Fix: create it, or correct the "
                "runbook URI naming it (spec.models[].artifacts / archive, spec.drills.evidence).",
                type=ErrorType.NO_SUCH_BUCKET,
                non_retryable=True,
            ) from None
        if code in _ACCESS_CODES or (status == 403 and code not in _RETRYABLE_CODES):
            raise ApplicationError(
                f"access denied to S3 bucket {bucket!r} ({doing}): {code} {message}. Fix: grant "
                f"the worker's IAM role {permission} on arn:aws:s3:::{bucket} and its objects "
                "(see infra/ for the policy), or check its credentials.",
                type=ErrorType.ACCESS_DENIED,
                non_retryable=True,
            ) from None
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            raise ApplicationError(
                f"S3 is throttling or failing ({code or status}) while {doing}; will retry: {message}",
                type=ErrorType.S3_UNAVAILABLE,
            ) from None
        raise ApplicationError(
            f"S3 refused {doing}: {code or status} {message}",
            type=ErrorType.s3_refused(code or str(status)),
            non_retryable=True,
        ) from None
    except NoCredentialsError:
        raise ApplicationError(
            f"no AWS credentials for S3 while {doing}: give the worker an AWS role or AWS_* "
            "credentials",
            type=ErrorType.S3_NO_CREDENTIALS,
            non_retryable=True,
        ) from None
    except BotoCoreError as exc:
        # Connection refused / reset, read timeouts: the endpoint may come back.
        raise ApplicationError(
            f"cannot reach S3 while {doing}: {exc}; will retry", type=ErrorType.S3_UNREACHABLE
        ) from None
