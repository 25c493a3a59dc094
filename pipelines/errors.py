"""Every error a user can meet, in one module, all under `UserError`.

Each carries a one-line message written for the person running a job: what is wrong and what to do.
The job runner (`pipelines.runtime.job_runner`) catches `UserError` alone, also when it arrives
wrapped by Ray, and prints that line with exit status 2; anything else is a bug and keeps its
traceback. A new error a user may cause belongs here, under the class of its concern.
"""
from fcn_core.errors import BackboneWeightsError, CheckpointError, UserError


class ConfigError(UserError, ValueError):
    """A flag or configuration value is out of range or inconsistent."""


# Storage: URIs, credentials, buckets, objects.
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


class InvalidManifestError(StorageError):
    """A manifest file cannot be read or lacks the columns a manifest has."""


class OutputBusyError(UserError):
    """Another run holds the output prefix."""


# Images and labels.
class ImageDecodeError(UserError, ValueError):
    """Bytes that are not a decodable image; the message is the reason, short enough for a table cell."""


class LabelError(UserError):
    """Labelled data that cannot be used as it is; the message names the file and the problem."""


class CorrectionError(UserError):
    """An export that cannot be imported as it is; the message names the file and what is wrong."""


class ExportLimitError(CorrectionError):
    """An export, or a part of it, declares a size over a documented limit (`pipelines.labelling.bounded`)."""


class UnknownImageError(CorrectionError):
    """The export names an image the output holds no segmented image of."""


class MaskSizeError(CorrectionError):
    """A corrected mask's size differs from its image's, as the output recorded it."""


class UnknownClassError(CorrectionError):
    """A corrected mask holds a class the output's labelmap.txt does not name."""


# Segmentation runs and their statistics.
class ErrorFractionExceeded(UserError):
    """More images failed than ``--max-error-fraction`` allows; no summary.json was written."""


class StatsLayoutError(UserError):
    """The output's statistics cannot be used as they are (other partitioning, an unreadable table)."""


# Tracking and models.
class TrackingUnavailableError(UserError):
    """The MLflow tracking server (or local store) cannot be used; the message says what to do."""


class ModelReferenceError(UserError, ValueError):
    """A ``--model`` reference names no model, version, alias, run or file; the message names it."""


class PromotionError(UserError):
    """``--promote`` cannot apply to these models; the message says why."""


class IncomparableModelsError(UserError):
    """The models predict different classes, or were scored on different data: their scores cannot be compared."""


__all__ = [
    "AccessDeniedError",
    "BackboneWeightsError",
    "BucketNotFoundError",
    "CheckpointError",
    "ConfigError",
    "CorrectionError",
    "CredentialsInUriError",
    "EmptyCorpusError",
    "ErrorFractionExceeded",
    "ExportLimitError",
    "ImageDecodeError",
    "IncomparableModelsError",
    "InvalidManifestError",
    "LabelError",
    "MaskSizeError",
    "ModelReferenceError",
    "ObjectNotFoundError",
    "OutputBusyError",
    "PromotionError",
    "StatsLayoutError",
    "StorageError",
    "StorageUnavailableError",
    "TrackingUnavailableError",
    "UnknownClassError",
    "UnknownImageError",
    "UserError",
]
