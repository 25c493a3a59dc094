"""pipelines.io.corpus: prefixes and manifests as Ray datasets of bytes, read from every backend's real server."""
from __future__ import annotations

import re
import uuid

import pyarrow as pa
import pytest

from pipelines.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    EmptyCorpusError,
    InvalidManifestError,
    StorageUnavailableError,
)
from pipelines.io.corpus import (
    attach_bytes,
    fetch_batch,
    list_corpus,
    read_corpus,
)
from pipelines.io.decode import decode_image
from pipelines.io.listing import CorpusFilter, iter_objects, write_manifest
from pipelines.io.listing_plan import list_on_driver, plan_from_listing
from pipelines.io.storage import RetryPolicy

COLUMNS = ["uri", "key", "size", "etag", "bytes", "error"]


def local_bytes(corpus, key: str) -> bytes:
    return (corpus.root / key).read_bytes()


@pytest.mark.integration
def test_reads_and_decodes_every_image_under_a_prefix(corpus_uri, ray_local, synthetic_corpus):
    rows = read_corpus(f"{corpus_uri}/JPEGImages").take_all()
    ids = synthetic_corpus.train_ids + synthetic_corpus.val_ids
    assert sorted(row["key"] for row in rows) == [f"{image_id}.jpg" for image_id in ids]
    for row in rows:
        assert list(row) == COLUMNS and row["error"] is None
        assert row["uri"] == f"{corpus_uri}/JPEGImages/{row['key']}"
        assert row["bytes"] == local_bytes(synthetic_corpus, f"JPEGImages/{row['key']}")
        assert row["size"] == len(row["bytes"]) and row["etag"]
        assert decode_image(row["bytes"]).shape[2] == 3


def test_a_listing_made_on_the_driver_is_used_as_is_without_asking_the_store(ray_local, synthetic_corpus):
    listing = list_on_driver(str(synthetic_corpus.root / "JPEGImages"), CorpusFilter(limit=3))
    assert listing is not None and len(listing) == 3
    # A source that does not exist: listing it would raise, so these rows can only come from the plan.
    missing = str(synthetic_corpus.root / "no-such-folder")
    rows = list_corpus(missing, plan=plan_from_listing(missing, CorpusFilter(), listing)).take_all()
    assert sorted(row["uri"] for row in rows) == sorted(info.uri for info in listing)
    with pytest.raises(EmptyCorpusError, match="no-such-folder"):
        plan_from_listing(missing, CorpusFilter(), [])


@pytest.mark.integration
def test_a_prefix_with_folders_is_listed_in_parallel_shards_without_duplicates(corpus_uri, ray_local):
    dataset = read_corpus(corpus_uri, CorpusFilter(exclude=("*.txt",)), rows_per_block=4, max_list_tasks=8)
    keys = sorted(row["key"] for row in dataset.select_columns(["key"]).take_all())
    assert keys == sorted(info.key for info in iter_objects(corpus_uri))
    assert len(keys) == 44  # 22 JPEG images and their 22 PNG masks


@pytest.mark.integration
def test_a_manifest_is_read_instead_of_listing(corpus_uri, ray_local, synthetic_corpus):
    manifest = f"{corpus_uri.rsplit('/', 1)[0]}/manifests/{uuid.uuid4().hex[:8]}.parquet"
    write_manifest(manifest, iter_objects(f"{corpus_uri}/JPEGImages"), rows_per_group=5)
    rows = read_corpus(manifest, max_list_tasks=3).take_all()
    assert sorted(row["key"] for row in rows) == sorted(info.key for info in iter_objects(f"{corpus_uri}/JPEGImages"))
    assert all(row["bytes"] == local_bytes(synthetic_corpus, f"JPEGImages/{row['key']}") for row in rows)
    limited = read_corpus(manifest, CorpusFilter(limit=7)).take_all()
    assert [row["key"] for row in limited] == [info.key for info in iter_objects(manifest)][:7]


@pytest.mark.integration
def test_limit_and_sample_select_the_same_objects_on_every_run(ray_local, s3_corpus):
    source = f"{s3_corpus}/JPEGImages"
    expected = [info.key for info in iter_objects(source, CorpusFilter(limit=5))]
    for _ in range(2):
        assert [row["key"] for row in list_corpus(source, CorpusFilter(limit=5)).take_all()] == expected
    sample = CorpusFilter(sample_fraction=0.5, seed=3)
    sampled = sorted(row["key"] for row in list_corpus(source, sample).take_all())
    assert sampled == sorted(info.key for info in iter_objects(source, sample)) and 0 < len(sampled) < 22


@pytest.mark.integration
def test_listed_objects_can_be_dropped_before_paying_for_their_gets(ray_local, s3_corpus):
    listed = list_corpus(f"{s3_corpus}/JPEGImages")
    assert listed.schema().names == ["uri", "key", "size", "etag"]
    kept = listed.filter(lambda row: row["key"] < "000010.jpg")
    rows = attach_bytes(kept, fetch_concurrency=4).take_all()
    assert sorted(row["key"] for row in rows) == [f"{index:06d}.jpg" for index in range(10)]
    assert all(row["bytes"] for row in rows)


@pytest.mark.integration
def test_an_object_that_vanishes_after_listing_becomes_an_error_row(backend, ray_local):
    for name in ("a.jpg", "b c.jpg", "ü.png"):
        backend.put(f"in/{name}", name.encode())
    listed = list_corpus(f"{backend.root}/in")
    backend.delete("in/b c.jpg")
    rows = {row["key"]: row for row in attach_bytes(listed).take_all()}
    assert rows["a.jpg"]["bytes"] == b"a.jpg" and rows["ü.png"]["bytes"] == "ü.png".encode()
    assert rows["b c.jpg"]["bytes"] is None
    assert rows["b c.jpg"]["error"] == \
        f"fetch failed: ObjectNotFoundError: no object or file at {backend.root}/in/b c.jpg"


@pytest.mark.integration
@pytest.mark.slow
def test_reads_land_on_every_node_of_a_cluster(ray_two_nodes, s3_corpus):
    dataset = read_corpus(f"{s3_corpus}/JPEGImages", rows_per_block=2).materialize()
    assert dataset.count() == 22
    stats = dataset.stats()
    fetch_stats = stats[stats.index("MapBatches(fetch_batch)"):]
    nodes_used = int(re.search(r"Tasks per node: .*?; (\d+) nodes used", fetch_stats).group(1))
    assert nodes_used == 2, fetch_stats


# --- errors before any Ray work ------------------------------------------------------------------


@pytest.mark.integration
def test_wrong_credentials_fail_before_ray_starts_work(object_backend, monkeypatch):
    object_backend.put("in/a.jpg", b"x")
    secret = object_backend.spoil_credentials(monkeypatch)
    with pytest.raises(AccessDeniedError) as caught:
        list_corpus(f"{object_backend.root}/in", retry=RetryPolicy(attempts=1))
    assert "\n" not in str(caught.value) and secret not in str(caught.value)


@pytest.mark.integration
def test_missing_bucket_fails_before_ray_starts_work(object_backend):
    missing = object_backend.root.replace("store-", "no-such-")
    with pytest.raises(BucketNotFoundError, match=f"bucket '{missing.split('/')[-1]}' does not exist"):
        read_corpus(f"{missing}/images")


@pytest.mark.integration
def test_empty_prefix_and_prefix_without_images_are_one_clear_line(s3_corpus):
    with pytest.raises(EmptyCorpusError, match=r"^no images under s3://corpus/nothing-here \(check the prefix\)$"):
        list_corpus("s3://corpus/nothing-here")
    with pytest.raises(EmptyCorpusError, match=r"no images under s3://corpus/voc/ImageSets \(filters: extensions="):
        list_corpus(f"{s3_corpus}/ImageSets")


def test_an_invalid_manifest_fails_before_ray_starts_work(tmp_path):
    bad = tmp_path / "listing.parquet"
    bad.write_bytes(b"PAR1 but not really")
    with pytest.raises(InvalidManifestError):
        list_corpus(str(bad))


@pytest.mark.integration
@pytest.mark.slow
def test_fetching_from_an_unreachable_store_fails_instead_of_marking_rows(monkeypatch):
    from infra.local.services import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    batch = pa.table({"uri": ["s3://bucket/a.jpg", "s3://bucket/b.jpg"]})
    with pytest.raises(StorageUnavailableError, match="could not reach http://127.0.0.1:"):
        fetch_batch(batch, columns={"uri": "bytes"}, retry=RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.01))


def test_fetch_batch_names_the_failing_column_when_there_are_several(tmp_path):
    (tmp_path / "image.jpg").write_bytes(b"image")
    batch = pa.table({"image_uri": [str(tmp_path / "image.jpg")], "mask_uri": [str(tmp_path / "missing.png")]})
    out = fetch_batch(batch, columns={"image_uri": "image_bytes", "mask_uri": "mask_bytes"})
    row = out.to_pylist()[0]
    assert row["image_bytes"] == b"image" and row["mask_bytes"] is None
    assert row["error"].startswith("mask_uri: fetch failed: ObjectNotFoundError: no object or file at ")
