"""What a run may record: secrets masked, configs as plain JSON types, parameters flattened for MLflow.

Nothing secret is logged: parameters, tags and logged dictionaries go through ``redact_mapping``,
which masks values under secret-looking names and any occurrence of the secrets in this process's
environment (the AWS secret key, the MLflow token, ...), and ``redact`` masks passwords in URLs.
No MLflow import here: storage and the job runner redact too.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
MAX_PARAM_VALUE_LENGTH = 6000  # MLflow rejects longer parameter values
_TRUNCATED = "...[truncated]"
_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential")
_MIN_SECRET_LENGTH = 8  # shorter environment values (e.g. "true") would mask ordinary text
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s@]+@", re.IGNORECASE)
# Query parameters that carry a credential in presigned and token URLs: S3 (SigV4 and the older
# Signature/AWSAccessKeyId form), GCS (X-Goog-*), Azure SAS (sig), and bearer tokens of any service.
# Credential and key ids go too: with a leaked signature they name whose key signed it.
_SECRET_QUERY_NAMES = ("x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
                       "x-goog-credential", "signature", "awsaccesskeyid", "sig", "token", "access_token",
                       "id_token", "refresh_token", "api_key", "apikey", "key", "password", "secret",
                       "client_secret", "code")
_SECRET_QUERY = re.compile(r"([?&;](?:" + "|".join(_SECRET_QUERY_NAMES) + r")=)[^&#;\s\"'<>]*", re.IGNORECASE)
_ENVIRONMENT_READ_ATTEMPTS = 100



def is_secret_name(name: str) -> bool:
    """True for names such as ``aws_secret_access_key``, ``MLFLOW_TRACKING_TOKEN``, ``s3.api_key``.

    ``key`` counts only as the name's last word (``api_key``, ``accessKey``), so that names such as
    ``key_prefix`` or ``AWS_ACCESS_KEY_ID`` (an identifier, not a secret) stay readable.
    """
    lowered = name.lower()
    words = [word for word in re.split(r"[^a-z0-9]+", lowered) if word]
    return any(word in lowered for word in _SECRET_WORDS) or bool(words and words[-1].endswith("key"))


def environment_snapshot() -> dict[str, str]:
    """A copy of ``os.environ`` that is safe to take while other threads set and delete variables.

    Iterating ``os.environ`` lists its keys, then reads each: a variable deleted in between (MLflow's
    telemetry thread does this) raises ``KeyError`` mid-walk. Copying again is cheap and the window is
    tiny, so a few attempts always succeed in practice; the last one skips what vanished.
    """
    for _ in range(_ENVIRONMENT_READ_ATTEMPTS):
        try:
            return dict(os.environ)
        except KeyError:
            continue
    return {name: value for name in list(os.environ) if (value := os.environ.get(name)) is not None}


def _environment_secrets() -> list[str]:
    """Values of secret-named environment variables, longest first (so none is half-masked)."""
    values = {value for name, value in environment_snapshot().items()
              if len(value) >= _MIN_SECRET_LENGTH and is_secret_name(name)}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every credential it may carry replaced by ``***``: environment secrets, passwords in
    URLs (``scheme://user:***@host``) and credentials in query strings (presigned S3, GCS and Azure URLs,
    ``token=``, ``sig=``, ``key=``). The one redaction every recorded URI and message goes through."""
    for secret in _environment_secrets():
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    return _SECRET_QUERY.sub(rf"\1{MASK}", text)


def redact_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` that is safe to log: nested mappings and lists keep their shape, every
    value under a secret-looking name (at any depth) becomes ``***``, strings lose environment secrets."""
    return {str(key): _redact_value(str(key), value, under_secret=False) for key, value in mapping.items()}


def _redact_value(name: str, value: Any, *, under_secret: bool) -> Any:
    secret = under_secret or is_secret_name(name)
    if isinstance(value, Mapping):
        return {str(key): _redact_value(str(key), item, under_secret=secret) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(name, item, under_secret=secret) for item in value]
    if secret and value not in (None, ""):
        return MASK
    return redact(value) if isinstance(value, str) else value


def plain_config(value: Any) -> Any:
    """Dataclasses and mappings as nested dicts of JSON types; anything else (paths, enums) as str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain_config(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): plain_config(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_config(item) for item in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def flatten_params(config: Any) -> dict[str, str]:
    """Redacted MLflow parameters from a config (dataclass or mapping): ``{"train.lr": "0.001", ...}``.

    Nested dataclasses and dicts become dotted names; values longer than MLflow's 6000-character
    limit are truncated (MLflow itself splits the upload into batches of 100).
    """
    flat: dict[str, str] = {}

    def visit(name: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                visit(f"{name}.{key}", item)
            return
        text = str(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - len(_TRUNCATED)] + _TRUNCATED
        flat[name] = text

    for key, value in redact_mapping(plain_config(config)).items():
        visit(key, value)
    return flat
