"""The storage errors a user can act on: one line each, saying what to do, never holding a secret."""
from __future__ import annotations

from pipelines.errors import UserError


class StorageError(UserError):
    """A storage problem the user can act on; the message is one line and says what to do."""


class AccessDeniedError(StorageError, PermissionError):
    """Credentials are missing or wrong, or they do not grant access to the URI."""


class BucketNotFoundError(StorageError, FileNotFoundError):
    """The bucket named by the URI does not exist at the configured endpoint."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """No object or file at the URI."""


class EmptyCorpusError(StorageError):
    """A source holds no image that passes the filters."""


class StorageUnavailableError(StorageError):
    """The store could not be reached even after retrying with backoff."""


class CredentialsInUriError(StorageError):
    """A URI carries credentials (``s3://KEY:SECRET@bucket/...``): refused, and never repeated in clear."""
