"""S3 and S3-compatible servers, through s3fs.

Credentials and endpoint come from the standard AWS variables or profiles (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``) and
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for S3-compatible stores. "Create if absent" is a
PUT with ``If-None-Match: *``, which AWS S3, MinIO and SeaweedFS honour; servers that predate it
ignore the header and overwrite, so every such create is checked by a second one (see `create_new`).
"""
from __future__ import annotations

import errno
import os

import fsspec
import fsspec.asyn

from pipelines.errors import AccessDeniedError, ObjectNotFoundError
from pipelines.io.stores.object_store import ListingPage, ObjectStore
from pipelines.io.stores.registry import register_store
from pipelines.io.stores.retry import RetryPolicy, causes

# Error codes an S3-compatible store answers with when a retry may well succeed. AWS answers
# ConditionalRequestConflict (409) to a conditional PUT racing another; retried, it gets its 412.
_RETRYABLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                              "RequestLimitExceeded", "InternalError", "ServiceUnavailable",
                              "ConditionalRequestConflict"})
_ACCESS_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                           "InvalidToken", "AllAccessDisabled", "InvalidClientTokenId"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


def _client_error_code(error: BaseException) -> tuple[str | None, int | None]:
    """The S3 error code and HTTP status behind ``error`` (s3fs wraps botocore's ClientError)."""
    for cause in causes(error):
        response = getattr(cause, "response", None)
        if isinstance(response, dict) and "Error" in response:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return response["Error"].get("Code"), status
    return None, None


@register_store
class S3Store(ObjectStore):
    """``s3://`` and ``s3a://``, through s3fs.

    AWS S3, or any S3-compatible server that ``AWS_ENDPOINT_URL`` names (MinIO, SeaweedFS, Ceph).
    """

    schemes = ("s3", "s3a")
    credentials_hint = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
    endpoint_variable = "AWS_ENDPOINT_URL"
    default_endpoint = "the AWS S3 endpoint"

    def settings(self) -> dict[str, str | None]:
        env = os.environ
        return {
            "endpoint": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            "profile": env.get("AWS_PROFILE") or None,
            "access_key": env.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env.get("AWS_SECRET_ACCESS_KEY") or None,
            "session_token": env.get("AWS_SESSION_TOKEN") or None,
        }

    def make_filesystem(self, settings: dict[str, str | None]) -> fsspec.AbstractFileSystem:
        import s3fs

        client_kwargs = {"region_name": settings["region"]} if settings["region"] else {}
        session_kwargs = {"profile": settings["profile"]} if settings["profile"] and not settings["access_key"] else {}
        filesystem = s3fs.S3FileSystem(
            endpoint_url=settings["endpoint"],
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": 5,
                "read_timeout": 30,
                # botocore absorbs brief hiccups itself; `Store.run` adds the longer backoff on top.
                "retries": {"mode": "standard", "max_attempts": 3},
                # Fetch stages run many GETs at once through one client; botocore's default pool is 10.
                "max_pool_connections": 64,
            },
            # One GET per object: with more, s3fs first sends a HEAD to decide whether to split the read.
            max_concurrency=1,
            skip_instance_cache=True,
            use_listings_cache=False,
            **session_kwargs,
        )
        # s3fs retries each call 5 times on its own (a class attribute, not a constructor argument);
        # stacked under botocore's and `Store.run`'s retries a dead store would take minutes to report.
        filesystem.retries = 1
        return filesystem

    def table_location(self, uri: str) -> tuple[str, dict[str, str]]:
        """The same credentials and endpoint for delta-rs; its log commits use conditional PUTs.

        ``conditional_put=etag`` makes a commit a create-if-absent of the next log entry, which
        AWS S3 and S3-compatible servers with ``If-None-Match`` (SeaweedFS, MinIO) honour, so two
        writers can never both take one table version.
        """
        settings = self.settings()
        options = {"conditional_put": "etag"}
        for name, option in (("endpoint", "AWS_ENDPOINT_URL"), ("region", "AWS_REGION"), ("profile", "AWS_PROFILE"),
                             ("access_key", "AWS_ACCESS_KEY_ID"), ("secret_key", "AWS_SECRET_ACCESS_KEY"),
                             ("session_token", "AWS_SESSION_TOKEN")):
            if settings[name]:
                options[option] = settings[name]
        if (settings["endpoint"] or "").startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
        return "s3://" + uri.split("://", 1)[1], options

    def no_answer_errors(self) -> tuple[type[BaseException], ...]:
        import aiohttp
        import botocore.exceptions

        return (*super().no_answer_errors(), botocore.exceptions.ConnectionError,
                botocore.exceptions.HTTPClientError, aiohttp.ClientConnectionError)

    def is_transient(self, error: BaseException) -> bool:
        code, status = _client_error_code(error)
        return self.is_unreachable(error) or code in _RETRYABLE_CODES or (status is not None and status >= 500)

    def translate(self, error: BaseException, uri: str) -> BaseException:
        import botocore.exceptions

        code, status = _client_error_code(error)
        if any(isinstance(cause, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError))
               for cause in causes(error)):
            return AccessDeniedError(f"no usable AWS credentials for {uri}: {self.credentials_hint}")
        if code in _ACCESS_CODES or status == 403:
            return AccessDeniedError(f"access denied to {uri} ({code or status}): {self.credentials_hint}")
        if code == "NoSuchBucket":
            return self.missing_bucket(uri)
        if code in _NOT_FOUND_CODES:
            return ObjectNotFoundError(f"no object or file at {uri}")
        return super().translate(error, uri)

    def list_page(self, filesystem: fsspec.AbstractFileSystem, bucket: str, prefix: str, *, delimited: bool,
                  page_size: int, token: str | None) -> ListingPage:
        # s3fs's public listing (find, ls) gathers a whole prefix before returning and knows no
        # continuation token; its `_call_s3` is the one call that pages, with s3fs's error translation.
        params = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        params.update({"Delimiter": "/"} if delimited else {})
        params.update({"ContinuationToken": token} if token else {})
        page = fsspec.asyn.sync(filesystem.loop, filesystem._call_s3, "list_objects_v2", **params)
        return ListingPage(objects=[(item["Key"], int(item["Size"]), item.get("ETag", "").strip('"'))
                                    for item in page.get("Contents", [])],
                           folders=[item["Prefix"] for item in page.get("CommonPrefixes", [])],
                           next_token=page.get("NextContinuationToken") if page.get("IsTruncated") else None)

    def create(self, filesystem: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
        try:
            super().create(filesystem, path, data)
        except Exception as error:
            # s3fs makes a FileExistsError only of AWS's answer, which names the failed condition;
            # S3-compatible servers answer 412 PreconditionFailed without naming it.
            code, status = _client_error_code(error)
            if code == "PreconditionFailed" or status == 412:
                raise FileExistsError(errno.EEXIST, "an object is already there", path) from error
            raise

    def create_new(self, uri: str, data: bytes, retry: RetryPolicy) -> bool:
        """A conditional PUT, then the same PUT again, which a server that honours the condition refuses.

        A server that ignores ``If-None-Match`` accepts both (and may have replaced what was there):
        then nothing was promised, and False tells the caller to settle the race another way.
        """
        super().create_new(uri, data, retry)
        try:
            super().create_new(uri, data, retry)
        except FileExistsError:
            return True
        return False

