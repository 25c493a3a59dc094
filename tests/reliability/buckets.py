"""Putting generated corpora into the S3 test server, with the test's own client (not the code under test)."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.fixtures.s3_server import SeaweedServer


def unique_bucket(server: SeaweedServer, stem: str) -> str:
    """A new, empty bucket named ``stem-<random>``."""
    return server.create_bucket(f"{stem}-{uuid.uuid4().hex[:10]}")


def put_objects(server: SeaweedServer, bucket: str, files: dict[str, bytes]) -> list[str]:
    """Upload ``{key: bytes}`` to ``bucket``; returns the objects' ``s3://`` URIs, sorted."""
    client = server.client()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=bucket, Key=item[0], Body=item[1]), files.items()))
    return sorted(f"s3://{bucket}/{key}" for key in files)
