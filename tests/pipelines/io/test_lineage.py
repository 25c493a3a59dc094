"""Digests of the data runs read: order-free, stable, and changed by a corrected mask."""
import hashlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fcn_core.masks import encode_mask_png
from fcn_core.synthetic import generate_corpus
from pipelines.io.labelled import MASK_SHA256, LabelledSource, list_labelled
from pipelines.io.lineage import CONTEXT_TAG, DataInput, SetDigest


def digest_of(lines: list[str]) -> SetDigest:
    digest = SetDigest()
    digest.add(lines)
    return digest


def test_a_digest_ignores_order_and_batching_but_not_content():
    lines = [f"s3://bucket/{index}.jpg\tetag{index}" for index in range(100)]
    batched = SetDigest()
    batched.add(lines[60:])
    batched.add(lines[:60])
    assert batched == digest_of(list(reversed(lines)))
    assert batched.count == 100
    assert digest_of(lines[:-1] + ["s3://bucket/99.jpg\tchanged"]).hexdigest != batched.hexdigest
    # a set mixed in twice is the same as its lines listed twice
    assert digest_of(lines[:10]).plus(digest_of(lines[10:20]), 2) == digest_of(lines[:10] + lines[10:20] * 2)


def test_the_digest_is_the_same_in_every_process():
    """Plain BLAKE2b, not Python's per-process hash: recorded digests stay comparable across runs."""
    expected = int.from_bytes(hashlib.blake2b(b"a", digest_size=8).digest(), "little")
    assert digest_of(["a"]).hexdigest == f"{expected:016x}"


def test_a_corrected_mask_changes_the_digest_of_a_voc_set(tmp_path):
    corpus = generate_corpus(tmp_path / "voc", num_train=4, num_val=2, min_size=32, max_size=48, seed=0)
    source = LabelledSource(str(corpus.root), split="val")
    before = list_labelled(source).digest()
    assert list_labelled(source).digest() == before  # listing again: the same
    assert list_labelled(LabelledSource(str(corpus.root), split="train")).digest() != before
    mask_path = corpus.root / "SegmentationClass" / f"{corpus.val_ids[0]}.png"
    mask_path.write_bytes(encode_mask_png(np.zeros((1, 1), np.uint8)))  # corrected in place, another size
    assert list_labelled(source).digest() != before


def test_a_manifest_is_versioned_by_its_mask_hashes(tmp_path):
    def manifest(sha: str) -> str:
        path = tmp_path / f"{sha}.parquet"
        buffer = io.BytesIO()
        pq.write_table(pa.table({"image_uri": ["s3://b/1.jpg"], "mask_uri": ["s3://b/1.png"], MASK_SHA256: [sha]}),
                       buffer)
        path.write_bytes(buffer.getvalue())
        return str(path)

    first, second = (list_labelled(LabelledSource(manifest(sha))) for sha in ("aa", "bb"))
    assert first.pairs == second.pairs and first.digest() != second.digest()
    limited = first.first(0)
    assert limited.items == [] and limited.digest().count == 0


def test_a_data_input_is_an_mlflow_dataset_with_its_context():
    entity = DataInput(name="val split of s3://b/voc", source="s3://b/voc", digest="00ff", rows=12,
                       context="evaluation").to_mlflow()
    assert entity.dataset.digest == "00ff" and entity.dataset.source_type == "s3"
    assert {tag.key: tag.value for tag in entity.tags} == {CONTEXT_TAG: "evaluation"}
