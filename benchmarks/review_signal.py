"""Does the review signal put out-of-domain photographs first? Real photos against the synthetic validation split.

A model trained on the synthetic corpus labels real photographs with meaningless masks, often with
high softmax confidence. This fits the novelty reference (`fcn_core.novelty`) on the synthetic
training split, as `train_fcn.py` does, and scores the held-out validation split and eight real
photographs (scikit-image's sample photos: astronaut, coffee, chelsea, rocket, camera,
immunohistochemistry, the left stereo motorcycle; matplotlib's grace_hopper), at the size the
nightly job sees them. Prints each group's novelty, the ranking (are the photos first?), the
ROC AUC, and how many of each group the default threshold lists. With ``--model CKPT`` (a checkpoint
trained on the same corpus, e.g. by ``python jobs/train_fcn.py --data D``) it prints the softmax
signals beside it: mean confidence and mean top-2 margin, which is where they fail.

    pip install scikit-image   # the sample photographs
    python -m benchmarks.review_signal [--model outputs/training/NAME/epoch_0029/checkpoint.pt]
    python -m benchmarks.review_signal --tiny   # 12 + 4 scenes, matplotlib's photo alone: what the test suite runs
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import tiny
from benchmarks.common import grace_hopper
from fcn_core.novelty import NoveltyReference
from fcn_core.synthetic import generate_corpus
from pipelines.labelling.review_rule import ReviewRule

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")


def real_photographs(*, matplotlib_only: bool = False) -> dict[str, np.ndarray]:
    """Eight real photographs, RGB uint8 (H, W, 3); with ``matplotlib_only``, its one alone (no scikit-image needed)."""
    if matplotlib_only:
        return {"grace_hopper": grace_hopper()}
    try:
        import skimage.data
    except ImportError:
        raise SystemExit("the sample photographs come with scikit-image: pip install scikit-image") from None

    photos = {name: getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS}
    photos["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    photos = {name: np.ascontiguousarray(np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3])
              for name, photo in photos.items()}
    return photos | {"grace_hopper": grace_hopper()}


def softmax_signals(loaded, image: np.ndarray) -> tuple[float, float]:
    """(mean confidence, mean top-2 margin) of a loaded checkpoint's softmax over the image's pixels."""
    import torch

    from fcn_core.normalization import normalize_image

    with torch.inference_mode():
        probabilities = loaded.model(normalize_image(image[None], loaded.normalization))[0].softmax(0)
    top = probabilities.topk(2, dim=0).values  # (2, H, W)
    return float(top[0].mean()), float((top[0] - top[1]).mean())


def roc_auc(positives: list[float], negatives: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a checkpoint trained on the synthetic corpus (optional)")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic corpus's seed (200 train, 50 val)")
    args = tiny.parse_args(parser, argv)
    rule = ReviewRule()
    loaded = None
    if args.model:
        from fcn_core.checkpoint import load_checkpoint

        loaded = load_checkpoint(args.model)
    with tempfile.TemporaryDirectory(prefix="review-signal-") as workdir:
        corpus = generate_corpus(Path(workdir), seed=args.seed, **(tiny.CORPUS if args.tiny else {}))

        def load(image_id: str) -> np.ndarray:
            return np.array(Image.open(corpus.root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))

        reference = NoveltyReference.fit(load(image_id) for image_id in corpus.train_ids)
        val = {image_id: load(image_id) for image_id in corpus.val_ids}
    photos = real_photographs(matplotlib_only=args.tiny)
    scores = {("val", name): reference.novelty(image) for name, image in val.items()}
    scores |= {("photo", name): reference.novelty(image) for name, image in photos.items()}
    print(f"reference: {reference.images} training scenes, described at {reference.side} px\n")
    header = f"{'image':<22} {'novelty':>8}"
    if loaded is not None:
        header += f" {'mean conf.':>10} {'top-2 margin':>12}"
    print(header)
    for name, image in photos.items():
        line = f"{name:<22} {scores[('photo', name)]:8.2f}"
        if loaded is not None:
            line += " {:10.3f} {:12.3f}".format(*softmax_signals(loaded, image))
        print(line)
    val_novelty = [scores[("val", name)] for name in val]
    photo_novelty = [scores[("photo", name)] for name in photos]
    print(f"{f'val ({len(val)}), median':<22} {np.median(val_novelty):8.2f}")
    print(f"{f'val ({len(val)}), highest':<22} {max(val_novelty):8.2f}")
    if loaded is not None:
        val_softmax = np.array([softmax_signals(loaded, image) for image in val.values()])
        print(f"val softmax: mean confidence {val_softmax[:, 0].min():.3f}-{val_softmax[:, 0].max():.3f}, "
              f"top-2 margin {val_softmax[:, 1].min():.3f}-{val_softmax[:, 1].max():.3f}")
    ranked = sorted(scores, key=scores.get, reverse=True)
    photos_first = sum(group == "photo" for group, _ in ranked[:len(photos)])
    print(f"\nphotos among the {len(photos)} most novel of {len(scores)} images: {photos_first}/{len(photos)}")
    print(f"ROC AUC, photos vs validation scenes: {roc_auc(photo_novelty, val_novelty):.3f}")
    print(f"listed at the default --novelty-threshold {rule.novelty_above:g}: "
          f"{sum(n > rule.novelty_above for n in photo_novelty)}/{len(photos)} photos, "
          f"{sum(n > rule.novelty_above for n in val_novelty)}/{len(val)} validation scenes")


if __name__ == "__main__":
    main()
