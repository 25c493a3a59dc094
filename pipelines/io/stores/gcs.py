"""Google Cloud Storage (``gs://``, ``gcs://``), through gcsfs's HTTP client.

Credentials are Google's Application Default Credentials: the key file named by
``GOOGLE_APPLICATION_CREDENTIALS``, the file ``gcloud auth application-default login`` writes, or
the metadata server on GCE and GKE. ``STORAGE_EMULATOR_HOST`` points the client at an emulator,
which takes anonymous requests (unless ``GOOGLE_APPLICATION_CREDENTIALS`` is set as well).
"Create if absent" is an upload with ``ifGenerationMatch=0``.

gcsfs's package-level ``GCSFileSystem`` is an experimental subclass that asks a gRPC control plane
for every bucket's layout (zonal, hierarchical namespace) before writing; emulators have no such
plane (the request hangs) and ordinary buckets gain nothing, so this store uses `gcsfs.core`'s class.
"""
from __future__ import annotations

import os
import types

import fsspec

from pipelines.errors import AccessDeniedError, StorageError
from pipelines.io.stores.object_store import ListingPage, ObjectStore
from pipelines.io.stores.registry import register_store
from pipelines.io.stores.retry import causes

# HTTP answers that a retry may cure (request timeout, throttling, server errors).
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@register_store
class GCSStore(ObjectStore):
    """``gs://`` and ``gcs://``: the JSON API of Cloud Storage or of an emulator, one request per try."""

    schemes = ("gs", "gcs")
    credentials_hint = "check GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"
    endpoint_variable = "STORAGE_EMULATOR_HOST"
    default_endpoint = "the Google Cloud Storage endpoint"

    def settings(self) -> dict[str, str | None]:
        emulator = os.environ.get("STORAGE_EMULATOR_HOST") or None  # gcloud's form has no scheme
        return {"endpoint": emulator if not emulator or "://" in emulator else f"http://{emulator}",
                "credentials_file": os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None}

    def table_location(self, uri: str) -> tuple[str, dict[str, str]]:
        """The same credentials for delta-rs (which speaks Cloud Storage's XML API, not the JSON one).

        fake-gcs-server does not serve the XML API's listing, so tables on ``gs://`` are not
        covered by this project's tests; Cloud Storage itself serves both. With an emulator set,
        delta-rs would write the table to Cloud Storage itself: refused.
        """
        settings = self.settings()
        if settings["endpoint"]:
            raise StorageError(f"cannot keep a statistics table at {uri} through {self.endpoint_variable}="
                               f"{settings['endpoint']}: its writer speaks Cloud Storage's XML API, which emulators "
                               f"do not serve; use a local or s3:// --output")
        credentials = settings["credentials_file"]
        options = {"google_application_credentials": credentials} if credentials else {}
        return "gs://" + uri.split("://", 1)[1], options

    def make_filesystem(self, settings: dict[str, str | None]) -> fsspec.AbstractFileSystem:
        import aiohttp
        from gcsfs.core import GCSFileSystem

        filesystem = GCSFileSystem(
            token="anon" if settings["endpoint"] and not settings["credentials_file"] else "google_default",
            endpoint_url=settings["endpoint"],
            # A connection within 5 s and no 30 s silence while reading; no limit on a whole (large) read.
            requests_timeout=aiohttp.ClientTimeout(sock_connect=5, sock_read=30),
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        # gcsfs retries each request 6 times with sleeps of up to 32 s (fixed when its class is made);
        # stacked under `Store.run`'s retries a dead store would take minutes to report. One try each.
        for name in ("_request", "_get_file_request"):
            setattr(filesystem, name, types.MethodType(getattr(GCSFileSystem, name).__wrapped__, filesystem))
        return filesystem

    def no_answer_errors(self) -> tuple[type[BaseException], ...]:
        import aiohttp
        import google.auth.exceptions
        import requests

        # requests' errors come from refreshing a token (its ProxyError is also gcsfs's 502).
        return (*super().no_answer_errors(), aiohttp.ClientConnectionError, google.auth.exceptions.TransportError,
                requests.exceptions.ConnectionError)

    def is_transient(self, error: BaseException) -> bool:
        from gcsfs.retry import HttpError

        return self.is_unreachable(error) or any(isinstance(cause, HttpError) and cause.code in _RETRYABLE_STATUS
                                                 for cause in causes(error))

    def translate(self, error: BaseException, uri: str) -> BaseException:
        import google.auth.exceptions
        from gcsfs.retry import HttpError

        unusable = (google.auth.exceptions.DefaultCredentialsError, google.auth.exceptions.RefreshError)
        if any(isinstance(cause, unusable) for cause in causes(error)):
            return AccessDeniedError(f"no usable Google Cloud credentials for {uri}: {self.credentials_hint}")
        for cause in causes(error):
            # gcsfs raises HttpError for 401, and an OSError "Forbidden: <request>" for 403.
            status = cause.code if isinstance(cause, HttpError) else 403 if str(cause).startswith("Forbidden") else None
            if status in (401, 403):
                return AccessDeniedError(f"access denied to {uri} ({status}): {self.credentials_hint}")
        # gcsfs names the request that got a 404: a bucket's ("b/NAME") or its listing's ("b/NAME/o").
        request = str(error.args[0]) if isinstance(error, FileNotFoundError) and error.args else ""
        if request.rstrip("/").endswith((f"b/{self.bucket(uri)}", f"b/{self.bucket(uri)}/o")):
            return self.missing_bucket(uri)
        return super().translate(error, uri)

    def list_page(self, filesystem: fsspec.AbstractFileSystem, bucket: str, prefix: str, *, delimited: bool,
                  page_size: int, token: str | None) -> ListingPage:
        # gcsfs's listing (find, ls) gathers a whole prefix before returning; `call` sends one request.
        page = filesystem.call("GET", "b/{}/o", bucket, json_out=True, prefix=prefix or None,
                               delimiter="/" if delimited else None, maxResults=page_size, pageToken=token)
        return ListingPage(objects=[(item["name"], int(item.get("size", 0)), item.get("etag", ""))
                                    for item in page.get("items", [])],
                           folders=page.get("prefixes", []), next_token=page.get("nextPageToken"))
