"""Report pictures render without a display and show what they claim."""
import io

import numpy as np
import torch
from PIL import Image

from fcn_core.models import build_model
from pipelines.training.reporting import class_iu_figure, confusion_matrix_figure, prediction_panel

CLASSES = ["background", "disc", "square"]


def _png(figure) -> Image.Image:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=50)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_figures_render_to_png():
    matrix = np.array([[90, 5, 5], [10, 80, 10], [0, 0, 0]])
    assert _png(confusion_matrix_figure(matrix, CLASSES)).size[0] > 100
    assert _png(class_iu_figure([0.9, 0.5, float("nan")], CLASSES)).size[0] > 100


def test_prediction_panel_shows_image_truth_and_prediction_side_by_side():
    torch.manual_seed(0)
    model = build_model("fcn8s", len(CLASSES), width_multiplier=1 / 16, alignment="compact").eval()
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), dtype=np.uint8)
    panel = prediction_panel(model, model.normalization, image, mask)
    assert panel.shape == (37, 3 * 53, 3) and panel.dtype == np.uint8
    assert np.array_equal(panel[:, :53], image)
    assert np.array_equal(panel[:, 53:106], image)  # class 0 everywhere: the overlay leaves the image as it is
