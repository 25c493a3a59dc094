"""The review page's files: photo, overlay and mask thumbnails side by side, a legend, a line for what is gone.

The page as a browser draws it: `tests/jobs/test_review_page.py`.
"""
import io

import numpy as np
from PIL import Image

from fcn_core.masks import contrast_colormap, decode_mask_png, encode_mask_png
from pipelines.labelling.review_page import ReviewedImage, write_review_page
from pipelines.labelling.review_rule import ReviewRule

NAMES = ["background", "disc", "square"]


def _reviewed(image_uri: str, mask_uri: str) -> ReviewedImage:
    return ReviewedImage(image_uri=image_uri, mask_uri=mask_uri, mean_confidence=0.4, novelty=None,
                         reason="low confidence", shares={"background": 0.5, "disc": 0.5, "square": 0.0},
                         confidences={"background": 0.9, "disc": 0.3, "square": None})


def test_each_image_gets_photo_overlay_and_mask_and_the_page_a_legend(tmp_path):
    Image.fromarray(np.full((300, 512, 3), 90, dtype=np.uint8)).save(tmp_path / "a.jpg")
    mask = np.zeros((300, 512), dtype=np.uint8)
    mask[:, 256:] = 1
    (tmp_path / "a.png").write_bytes(encode_mask_png(mask))
    images = [_reviewed(str(tmp_path / "a.jpg"), str(tmp_path / "a.png")),
              _reviewed(str(tmp_path / "gone.jpg"), str(tmp_path / "gone.png"))]
    files = write_review_page(str(tmp_path / "review"), "2026-12-07", images, rule=ReviewRule(), listed=2)

    assert set(files) == {"index.html", "thumbs/0001-photo.jpg", "thumbs/0001-overlay.jpg", "thumbs/0001-mask.png"}
    assert all((tmp_path / "review" / name).read_bytes() == data for name, data in files.items())
    shrunk = decode_mask_png(files["thumbs/0001-mask.png"])  # the mask alone, at thumbnail size: class indices
    assert shrunk.shape == (150, 256) and (shrunk[:, :128] == 0).all() and (shrunk[:, 128:] == 1).all()
    painted = np.asarray(Image.open(io.BytesIO(files["thumbs/0001-overlay.jpg"])).convert("RGB"), dtype=int)
    assert abs(painted[75, 60] - 90).max() <= 3  # background: the photo (JPEG's rounding aside)
    assert painted[75, 200, 0] > 150 > painted[75, 200, 2]  # disc: tinted towards its colour

    page = files["index.html"].decode()
    for colour, name in zip(contrast_colormap(len(NAMES)), NAMES):  # the legend: every class, its colour, in order
        assert f"<li><i class=swatch style='background:#{colour.tobytes().hex()}'></i>{name}" in page
    assert page.index("<li><i class=swatch") < page.index("<table>")
    row = page.split("<tr>")[2]
    assert [src.split("'")[0] for src in row.split("src='")[1:]] == [
        "thumbs/0001-photo.jpg", "thumbs/0001-overlay.jpg", "thumbs/0001-mask.png"]
    assert "disc 50.0% (conf. 0.30)" in row and "square" not in row  # classes it holds, with their swatch
    assert "<td colspan=3 class=missing>image or mask no longer readable</td>" in page.split("<tr>")[3]
