"""Decoding fetched pairs for training and naming the classes, without starting Ray."""
import io

import numpy as np
import pytest
from PIL import Image

from fcn_core.masks import encode_mask_png
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES
from pipelines.errors import ConfigError, LabelError
from pipelines.training.classes import class_names_of
from pipelines.training.config import TrainConfig
from pipelines.training.data import decode_rows


def _jpeg(height, width):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _rows(*pairs):
    """A batch as `read_labelled` hands it over; good rows have None or nan as `error`."""
    column = lambda values: np.array(values, dtype=object)  # noqa: E731
    return {"image_uri": column([f"s3://c/{i}.jpg" for i in range(len(pairs))]),
            "mask_uri": column([f"s3://c/{i}.png" for i in range(len(pairs))]),
            "image_bytes": column([image for image, _, _ in pairs]),
            "mask_bytes": column([mask for _, mask, _ in pairs]),
            "error": column([error for _, _, error in pairs])}


GOOD = (_jpeg(20, 30), encode_mask_png(np.ones((20, 30), np.uint8)), None)


def test_good_pairs_decode_to_images_and_masks_of_their_own_sizes():
    other = (_jpeg(8, 5), encode_mask_png(np.zeros((8, 5), np.uint8)), float("nan"))
    images, masks = decode_rows(_rows(GOOD, other), num_classes=6)
    assert [image.shape for image in images] == [(20, 30, 3), (8, 5, 3)]
    assert [mask.shape for mask in masks] == [(20, 30), (8, 5)]
    assert masks[0].dtype == np.uint8 and int(masks[0].max()) == 1


@pytest.mark.parametrize(
    ("bad", "names"),
    [
        ((_jpeg(20, 30), encode_mask_png(np.ones((21, 30), np.uint8)), None), ["s3://c/1.png", "30x21"]),
        ((_jpeg(8, 8), encode_mask_png(np.full((8, 8), 7, np.uint8)), None), ["s3://c/1.png", "7"]),
        ((None, encode_mask_png(np.ones((8, 8), np.uint8)), "fetch failed: AccessDeniedError: denied"),
         ["s3://c/1.jpg", "AccessDeniedError"]),
        ((b"not a jpeg", encode_mask_png(np.ones((8, 8), np.uint8)), None), ["s3://c/1.jpg"]),
    ],
)
def test_a_bad_pair_is_a_label_error_naming_the_file(bad, names):
    with pytest.raises(LabelError) as raised:
        decode_rows(_rows(GOOD, bad), num_classes=6)
    assert all(name in str(raised.value) for name in names), str(raised.value)


def test_class_names_come_from_the_flag_or_the_corpus_labelmap(synthetic_corpus, tmp_path):
    assert class_names_of(TrainConfig(data=str(synthetic_corpus.root))) == list(SYNTHETIC_CLASS_NAMES)
    assert class_names_of(TrainConfig(data="s3://anywhere", class_names=("bg", "cat"))) == ["bg", "cat"]
    with pytest.raises(ConfigError, match="--class-names"):
        class_names_of(TrainConfig(data=str(tmp_path)))
