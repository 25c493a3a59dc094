"""The prediction overlays of a training report show image, truth and prediction side by side."""
import numpy as np
import torch

from fcn_core.models import build_model
from pipelines.training.reporting import prediction_panel

CLASSES = ["background", "disc", "square"]


def test_prediction_panel_shows_image_truth_and_prediction_side_by_side():
    torch.manual_seed(0)
    model = build_model("fcn8s", len(CLASSES), width_multiplier=1 / 16, alignment="compact").eval()
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), dtype=np.uint8)
    panel = prediction_panel(model, model.normalization, image, mask)
    assert panel.shape == (37, 3 * 53, 3) and panel.dtype == np.uint8
    assert np.array_equal(panel[:, :53], image)
    assert np.array_equal(panel[:, 53:106], image)  # class 0 everywhere: the overlay leaves the image as it is
