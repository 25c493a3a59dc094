"""pipelines.io.listing: filters, streaming listings, shards and manifests, on every backend's real server."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import InvalidManifestError
from pipelines.io import listing
from pipelines.io.listing import (
    WHOLE,
    CorpusFilter,
    ListingShard,
    ObjectInfo,
    iter_objects,
    iter_pages,
    plan_shards,
    read_manifest,
    write_manifest,
)

# Names chosen to catch ordering and escaping mistakes: "a.jpg" sorts before "a/…" in S3 byte order.
HOSTILE_KEYS = ["a.jpg", "a/1.JPG", "a/sub dir/2.jpeg", "a0.png", "b/ünï cödé.webp", "c/notes.txt",
                "c/scan.TIFF", "c/scan.tif", "d/e/f/g.bmp", "folder.jpg/inside.png"]
IMAGE_KEYS = sorted(key for key in HOSTILE_KEYS if not key.endswith(".txt"))


# --- filters -------------------------------------------------------------------------------------


def test_extensions_match_case_insensitively_and_ignore_folders():
    flt = CorpusFilter()
    assert [flt.accepts(key) for key in ("x/A.JPEG", "b.Tif", "c.webp", "d.txt", "e", "jpg", "f.jpg/")] == \
        [True, True, True, False, False, False, False]
    assert CorpusFilter(extensions=(".PNG",)).accepts("a.png")
    assert not CorpusFilter(extensions=("png",)).accepts("a.jpg")


def test_include_and_exclude_globs_apply_to_the_relative_key():
    flt = CorpusFilter(include=("train/*",), exclude=("*/blurry-*",))
    assert flt.accepts("train/cats/1.jpg")
    assert not flt.accepts("val/1.jpg") and not flt.accepts("train/blurry-2.jpg")


def test_sample_is_deterministic_near_its_fraction_and_stable_as_the_corpus_grows():
    keys = [f"img/{index:06d}.jpg" for index in range(20_000)]
    flt = CorpusFilter(sample_fraction=0.1, seed=7)
    sampled = {key for key in keys if flt.accepts(key)}
    assert 1800 < len(sampled) < 2200
    more = keys + [f"new/{index:06d}.jpg" for index in range(5000)]
    assert {key for key in more if flt.accepts(key)} >= sampled  # earlier members stay in
    assert {key for key in keys if CorpusFilter(sample_fraction=0.1, seed=8).accepts(key)} != sampled


def test_invalid_filters_are_refused():
    for options in ({"limit": 0}, {"sample_fraction": 0.0}, {"sample_fraction": 1.5}, {"extensions": ()}):
        with pytest.raises(ValueError):
            CorpusFilter(**options)


def test_filter_describes_itself_for_error_messages():
    text = CorpusFilter(include=("a/*",), limit=5).describe()
    assert "extensions=bmp,gif,jpeg,jpg,png,tif,tiff,webp" in text and "include=a/*" in text and "limit=5" in text


# --- local listing -------------------------------------------------------------------------------


@pytest.fixture
def local_tree(tmp_path):
    root = tmp_path / "corpus"
    for key in HOSTILE_KEYS:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())
    return root


def test_local_listing_is_in_s3_key_order_with_sizes_and_etags(local_tree):
    objects = list(iter_objects(str(local_tree)))
    assert [info.key for info in objects] == IMAGE_KEYS
    first = objects[0]
    assert first.uri == f"{local_tree}/a.jpg" and first.size == len(b"a.jpg") and first.etag
    os.utime(local_tree / "a.jpg", (1, 1))
    assert next(iter_objects(str(local_tree))).etag != first.etag  # a changed file gets a new etag


def test_local_listing_accepts_relative_paths_and_file_uris(local_tree, monkeypatch):
    monkeypatch.chdir(local_tree.parent)
    assert [info.uri for info in iter_objects("corpus")] == [f"{local_tree}/{key}" for key in IMAGE_KEYS]
    assert [info.key for info in iter_objects(f"file://{local_tree}/")] == IMAGE_KEYS


def test_limit_takes_the_first_keys_in_order(local_tree):
    assert [info.key for info in iter_objects(str(local_tree), CorpusFilter(limit=3))] == IMAGE_KEYS[:3]


def test_symlinked_files_are_listed_and_symlinked_folders_not_followed(local_tree):
    os.symlink(local_tree / "a.jpg", local_tree / "link.jpg")
    os.symlink(local_tree, local_tree / "loop")
    keys = [info.key for info in iter_objects(str(local_tree))]
    assert "link.jpg" in keys and not any(key.startswith("loop/") for key in keys)


def test_local_pages_hold_at_most_a_page_of_objects(tmp_path, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 4)
    for index in range(10):
        (tmp_path / f"{index}.jpg").write_bytes(b"x")
    assert [len(page) for page in iter_pages(str(tmp_path))] == [4, 4, 2]


def test_only_object_store_listings_are_sharded(local_tree):
    assert plan_shards(str(local_tree)) == [WHOLE]
    with pytest.raises(ValueError, match="only object-store listings are sharded"):
        next(iter_pages(str(local_tree), ListingShard(folders=("a/",))))


# --- manifests -----------------------------------------------------------------------------------


def test_manifest_round_trip_in_row_groups(local_tree, tmp_path):
    manifest = str(tmp_path / "m" / "corpus.parquet")
    assert write_manifest(manifest, iter_objects(str(local_tree)), rows_per_group=3) == len(IMAGE_KEYS)
    assert pq.ParquetFile(manifest).metadata.num_row_groups == 3
    assert list(read_manifest(manifest)) == list(iter_objects(str(local_tree)))
    assert [info.key for info in read_manifest(manifest, row_groups=[1])] == IMAGE_KEYS[3:6]
    assert [info.key for info in iter_objects(manifest, CorpusFilter(extensions=("png",)))] == \
        [key for key in IMAGE_KEYS if key.endswith(".png")]


def test_manifests_must_have_the_manifest_columns(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"path": ["a.jpg"]}), bad)
    with pytest.raises(InvalidManifestError, match="lacks column\\(s\\) uri, key, size, etag"):
        list(read_manifest(str(bad)))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(InvalidManifestError, match="not a readable Parquet manifest"):
        list(read_manifest(str(garbage)))


def test_is_manifest():
    assert listing.is_manifest("s3://b/listing.PARQUET") and not listing.is_manifest("s3://b/images/")


# --- every backend -------------------------------------------------------------------------------


@pytest.fixture
def tree(backend) -> str:
    """HOSTILE_KEYS under ``root/`` on the backend, beside an object outside it; yields the root's URI."""
    for key in HOSTILE_KEYS:
        backend.put(f"root/{key}", key.encode())
    backend.put("elsewhere/x.jpg", b"x")
    return f"{backend.root}/root"


@pytest.mark.integration
def test_listing_streams_every_image_with_sizes_and_etags(backend, tree):
    objects = list(iter_objects(tree))
    assert sorted(info.key for info in objects) == IMAGE_KEYS
    by_key = {info.key: info for info in objects}
    assert by_key["b/ünï cödé.webp"].uri == f"{tree}/b/ünï cödé.webp"
    assert by_key["a.jpg"].size == len(b"a.jpg") and by_key["a.jpg"].etag
    assert list(iter_objects(tree + "/")) == objects  # a trailing slash changes nothing
    backend.put("root/a.jpg", b"changed a.jpg")
    assert next(info for info in iter_objects(tree) if info.key == "a.jpg").etag != by_key["a.jpg"].etag


@pytest.mark.integration
def test_shards_together_list_each_object_exactly_once(backend, tree):
    whole = sorted(info.key for info in iter_objects(tree))
    for max_shards in (2, 3, 32):
        shards = plan_shards(tree, max_shards=max_shards)
        assert len(shards) <= max_shards and (len(shards) >= 2 or backend.name == "local")
        keys = [info.key for shard in shards for info in iter_objects(tree, shard=shard)]
        assert sorted(keys) == whole


@pytest.mark.integration
def test_manifest_round_trip(backend, tree):
    manifest = f"{backend.root}/manifests/root.parquet"
    write_manifest(manifest, iter_objects(tree))
    assert list(read_manifest(manifest)) == list(iter_objects(tree))


@pytest.mark.integration
def test_a_single_object_is_a_corpus_of_one(backend, tree):
    assert [(info.uri, info.key) for info in iter_objects(f"{tree}/a/1.JPG")] == [(f"{tree}/a/1.JPG", "1.JPG")]


@pytest.mark.integration
@pytest.mark.slow
def test_listing_pages_through_more_than_a_thousand_objects(backend):
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda index: backend.put(f"img/{index:05d}.jpg", b"x"), range(2100)))
    pages = list(iter_pages(f"{backend.root}/img"))
    assert [len(page) for page in pages] == [1000, 1000, 100]
    assert [info.key for page in pages for info in page] == [f"{index:05d}.jpg" for index in range(2100)]
    assert plan_shards(f"{backend.root}/img") == [WHOLE]  # a flat prefix is one shard


def test_object_info_is_a_plain_record():
    info = ObjectInfo("s3://b/k.jpg", "k.jpg", 3, "e")
    assert vars(info) == {"uri": "s3://b/k.jpg", "key": "k.jpg", "size": 3, "etag": "e"}
