"""The review page: a night's review list as one static HTML page, thumbnails beside it.

``OUTPUT/review/date=DATE/index.html`` lists the images of the night's review list, most
doubtful first (`pipelines.labelling.review_rule.ReviewRule`): the photo, the mask over it and the
mask alone side by side, why it is listed, its confidence and novelty, the share and mean confidence
of each class it holds, and its URI; a legend names each class's colour. Classes are drawn in
`fcn_core.masks.contrast_colormap`'s colours, tinted and outlined (`fcn_core.masks.overlay`), so a
region shows over any photo: VOC's colours, which the mask files keep, all but vanish over skin or
an orange suit. Thumbnails are small files under ``thumbs/`` next to the page and referenced by
relative paths, so the folder opens offline, copied anywhere, from the object store (through any
static file server, or a presigned URL per file) and as an MLflow artifact. A line at the top says
how many thumbnails the browser could load, so a page opened away from its thumbnails says so.
"""
from __future__ import annotations

import html
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fcn_core.masks import contrast_colormap, decode_mask_png, encode_mask_png, overlay
from pipelines.errors import ImageDecodeError, ObjectNotFoundError
from pipelines.io import storage
from pipelines.io.decode import decode_for_inference
from pipelines.labelling.review_rule import ReviewRule

THUMBNAIL_SIDE = 256
PAGE_LIMIT = 200  # images on the page; the CSV beside it lists them all
SHOWN_SHARE = 0.005  # classes below this share of an image are left out of its line
# Heavier than a lone preview's 0.5: the photo is shown beside the overlay, which is there to show the classes.
OVERLAY_ALPHA = 0.6
THUMBNAIL_KINDS = (("photo", "jpg"), ("overlay", "jpg"), ("mask", "png"))  # side by side, in this order
_COLOURS = contrast_colormap(256)


@dataclass(frozen=True)
class ReviewedImage:
    """One line of the page: where the image and mask are, and what the statistics say of them."""

    image_uri: str
    mask_uri: str
    mean_confidence: float
    novelty: float | None  # None: the model carries no novelty reference
    reason: str  # why it is on the list
    shares: dict[str, float]  # every class of the model, in class-index order -> fraction of the image's pixels
    confidences: dict[str, float | None]  # class -> mean confidence over its pixels


def thumbnails(image_bytes: bytes, mask_bytes: bytes) -> tuple[bytes, bytes, bytes]:
    """The `THUMBNAIL_KINDS` of one image (longer side `THUMBNAIL_SIDE`): photo, mask over it, mask alone.

    The photo is decoded at reduced size (as for inference, EXIF orientation applied); the mask,
    at full size, is shrunk to the same size by nearest neighbour so classes stay classes. The mask
    alone is a palette PNG in the overlay's colours: a few hundred bytes, read back as class indices.
    """
    photo = decode_for_inference(image_bytes, max_side=THUMBNAIL_SIDE).pixels  # (h, w, 3)
    height, width = photo.shape[:2]
    mask = np.asarray(Image.fromarray(decode_mask_png(mask_bytes)).resize((width, height), Image.NEAREST))
    return _jpeg(photo), _jpeg(overlay(photo, mask, alpha=OVERLAY_ALPHA)), encode_mask_png(mask, _COLOURS)


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def render_page(date: str, images: list[ReviewedImage], thumbnail_names: list[tuple[str, ...] | None], *,
                rule: ReviewRule, listed: int) -> str:
    """The page's HTML; ``thumbnail_names[i]`` is the `THUMBNAIL_KINDS` relative to the page, or None if unreadable."""
    swatches = {name: f"<i class=swatch style='background:#{_COLOURS[index].tobytes().hex()}'></i>"
                for index, name in enumerate(images[0].shares if images else ())}
    lines = []
    for rank, (image, names) in enumerate(zip(images, thumbnail_names), start=1):
        classes = "<br>".join(
            f"{swatches[name]}{html.escape(name)} {share:.1%}" + (f" (conf. {image.confidences[name]:.2f})"
                                                                  if image.confidences.get(name) is not None else "")
            for name, share in sorted(image.shares.items(), key=lambda item: -item[1]) if share >= SHOWN_SHARE)
        pictures = (f"<td colspan={len(THUMBNAIL_KINDS)} class=missing>image or mask no longer readable</td>"
                    if names is None else "".join(f"<td><img src='{name}' alt='{kind} {rank}'></td>"
                                                  for name, (kind, _) in zip(names, THUMBNAIL_KINDS)))
        uri = html.escape(image.image_uri)
        novelty = "—" if image.novelty is None else f"{image.novelty:.2f}"
        lines.append(f"<tr><td>{rank}</td>{pictures}<td>{html.escape(image.reason)}</td>"
                     f"<td><b>{image.mean_confidence:.3f}</b></td><td><b>{novelty}</b></td>"
                     f"<td class=classes>{classes}</td><td class=uri><a href='{uri}'>{uri}</a></td></tr>")
    legend = "".join(f"<li>{swatch}{html.escape(name)}{' (left unpainted)' if index == 0 else ''}</li>"
                     for index, (name, swatch) in enumerate(swatches.items()))
    shown = f"the {len(images)} most doubtful shown" if listed > len(images) else "all shown"
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Review {html.escape(date)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 6px; vertical-align: top; }}
img {{ max-width: {THUMBNAIL_SIDE}px; max-height: {THUMBNAIL_SIDE}px; display: block; }}
.uri {{ font-family: monospace; font-size: 85%; word-break: break-all; max-width: 28em; }}
.classes {{ white-space: nowrap; }}
.missing {{ color: #a00; }}
.legend {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; }}
.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: -0.1em;
           border: 1px solid #888; }}
</style></head>
<body>
<h1>Review list {html.escape(date)}</h1>
<p>{listed} images with mean confidence below {rule.confidence_below:g} or novelty above {rule.novelty_above:g}
({shown}), most doubtful first. Mean confidence is the average over an image's pixels of its winning class's
softmax probability: low when the model hesitates between classes. Novelty says how unlike the model's training
images an image is (its colours and texture): 1 is as far out as the 1% most unusual training images, 2 twice as
far. On images unlike any it was trained on a model can be confident and wrong, so novelty lists them too.</p>
<p>Each image is shown three times: the photo, the mask over it (each class tinted with its colour and outlined,
background left as the photo) and the mask alone.</p>
<ul class=legend>{legend}</ul>
<p id=thumbnail-status>loading thumbnails...</p>
<table><tr><th>#</th><th>photo</th><th>overlay</th><th>mask</th><th>why</th><th>confidence</th><th>novelty</th>
<th>classes (share, confidence)</th>
<th>image</th></tr>
{chr(10).join(lines)}
</table>
<script>
window.addEventListener("load", () => {{
  const images = [...document.images];
  const loaded = images.filter(image => image.complete && image.naturalWidth > 0).length;
  const status = document.getElementById("thumbnail-status");
  status.dataset.loaded = loaded;
  status.dataset.total = images.length;
  status.textContent = loaded === images.length ? `all ${{images.length}} thumbnails loaded`
    : `${{images.length - loaded}} of ${{images.length}} thumbnails could not be loaded: `
      + "open the page beside its thumbs/ folder";
}});
</script>
</body></html>
"""


def write_review_page(folder_uri: str, date: str, images: list[ReviewedImage], *, rule: ReviewRule,
                      listed: int) -> dict[str, bytes]:
    """Write ``folder_uri/index.html`` and its ``folder_uri/thumbs/``; returns them by relative name.

    At most `PAGE_LIMIT` images (the caller passes them most doubtful first). Thumbnails are made
    a few at a time (decoding releases the GIL); an image or mask that can no longer be read gets a
    line saying so instead of a reason for the night's run to fail.
    """
    shown = images[:PAGE_LIMIT]

    def make(image: ReviewedImage) -> tuple[bytes, bytes, bytes] | None:
        try:
            return thumbnails(storage.read_bytes(image.image_uri), storage.read_bytes(image.mask_uri))
        except (ObjectNotFoundError, ImageDecodeError, ValueError):
            return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        made = list(pool.map(make, shown))
    files: dict[str, bytes] = {}
    names: list[tuple[str, ...] | None] = []
    for rank, made_files in enumerate(made, start=1):
        if made_files is None:
            names.append(None)
            continue
        named = tuple(f"thumbs/{rank:04d}-{kind}.{extension}" for kind, extension in THUMBNAIL_KINDS)
        files.update(zip(named, made_files))
        names.append(named)
    files["index.html"] = render_page(date, shown, names, rule=rule, listed=listed).encode()
    for name, data in files.items():
        storage.write_bytes_atomic(storage.join(folder_uri, name), data)
    return files
