"""evaluate_model on a real local Ray: the pipeline's counts equal a plain loop over the same pairs."""
import math

import numpy as np
import pytest
import torch

from fcn_core.checkpoint import load_checkpoint
from fcn_core.masks import decode_mask_png
from fcn_core.metrics import ConfusionMatrix
from fcn_core.normalization import normalize_image
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.evaluate import evaluate_model
from pipelines.io.decode import decode_image
from pipelines.tracking.models import resolve_model_reference

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _plain_loop(checkpoint: str, corpus, ids) -> np.ndarray:
    loaded = load_checkpoint(checkpoint)
    confusion = ConfusionMatrix(len(corpus.class_names))
    with torch.inference_mode():
        for image_id in ids:
            image = decode_image((corpus.root / "JPEGImages" / f"{image_id}.jpg").read_bytes())
            mask = decode_mask_png((corpus.root / "SegmentationClass" / f"{image_id}.png").read_bytes())
            prediction = loaded.model(normalize_image(image, loaded.normalization)).argmax(dim=1)  # (1, H, W)
            confusion.update(prediction, torch.from_numpy(mask)[None])
    return confusion.to_numpy()


def test_counts_match_a_plain_loop_and_files_are_written(ray_local, synthetic_corpus, tiny_checkpoint, tmp_path):
    # 3 batches of 2 over 2 actors: one actor runs two, so a batch is left to time after warm-up.
    config = EvaluationConfig(data=str(synthetic_corpus.root), batch_size=2, num_actors=2, cpus_per_actor=1,
                              tracking=False)
    evaluation = evaluate_model(resolve_model_reference(tiny_checkpoint), config, output=str(tmp_path / "out"),
                                log=lambda message: None)

    np.testing.assert_array_equal(evaluation.confusion.to_numpy(),
                                  _plain_loop(tiny_checkpoint, synthetic_corpus, synthetic_corpus.val_ids))
    assert evaluation.images == len(synthetic_corpus.val_ids)
    assert evaluation.run_id is None and evaluation.images_per_second > 0
    assert evaluation.parameters == sum(p.numel() for p in load_checkpoint(tiny_checkpoint).model.parameters())
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "confusion_matrix.json", "confusion_matrix.png", "per_class_iu.json"]


def test_limit_and_split_choose_the_pairs(ray_local, synthetic_corpus, tiny_checkpoint):
    config = EvaluationConfig(data=str(synthetic_corpus.root), split="train", limit=3, num_actors=1,
                              cpus_per_actor=1, tracking=False)
    evaluation = evaluate_model(resolve_model_reference(tiny_checkpoint), config, output=None,
                                log=lambda message: None)
    assert evaluation.images == 3
    assert math.isnan(evaluation.images_per_second)  # one batch, the actor's warm-up: nothing left to time
    expected = _plain_loop(tiny_checkpoint, synthetic_corpus, synthetic_corpus.train_ids)
    assert evaluation.confusion.to_numpy().sum() < expected.sum()  # a subset of the split's pixels
