"""Comparison tables, plots and the promotion rule, on hand-made confusion matrices (no services)."""
import csv
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from fcn_core.metrics import ConfusionMatrix
from pipelines.errors import PromotionError
from pipelines.evaluation.evaluate import ModelEvaluation, evaluation_files
from pipelines.evaluation.promotion import decide_promotion, promotion_name, registered_name
from pipelines.evaluation.report import comparison_csv, comparison_files, comparison_markdown
from pipelines.io.lineage import DataInput
from pipelines.tracking.models import ResolvedModel

CLASSES = ("background", "disc", "pot|plant")


def _evaluation(reference: str, matrix, *, version: str | None = None, images: int = 4,
                speed: float = 2.0) -> ModelEvaluation:
    model = ResolvedModel(checkpoint_path="/unused.pt", reference=reference,
                          name="fcn" if version else None, version=version, run_id=None)
    return ModelEvaluation(model=model, class_names=CLASSES, confusion=ConfusionMatrix.from_matrix(np.array(matrix)),
                           images=images, images_per_second=speed, parameters=1234567,
                           data=DataInput(name="val split of data", source="data", digest="0" * 16, rows=images,
                                          context="evaluation"))


PERFECT = [[50, 0, 0], [0, 30, 0], [0, 0, 20]]
HALF = [[40, 10, 0], [10, 20, 0], [0, 0, 0]]  # class 2 absent from truth and predictions: IU undefined


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).size


def test_markdown_has_a_row_per_model_and_a_row_per_class():
    evaluations = [_evaluation("models:/fcn@candidate", PERFECT, version="3"), _evaluation("run.pt", HALF)]
    text = comparison_markdown(evaluations)
    lines = text.splitlines()
    assert "| models:/fcn@candidate (v3) | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 2.0 | 1,234,567 |" in lines
    assert any(line.startswith("| run.pt | 0.7500 |") for line in lines)
    assert "| pot\\|plant | 1.0000 | n/a |" in lines  # pipes escaped, undefined IU shown as n/a
    assert text.count("\n| background |") == 1


def test_csv_is_one_wide_row_per_model_with_every_number():
    evaluations = [_evaluation("models:/fcn/1", PERFECT, version="1"), _evaluation("run.pt", HALF, speed=8.0)]
    rows = list(csv.DictReader(io.StringIO(comparison_csv(evaluations).decode())))
    assert [row["model"] for row in rows] == ["models:/fcn/1", "run.pt"]
    assert float(rows[1]["images_per_second"]) == 8.0 and rows[1]["parameters"] == "1234567"
    assert math.isclose(float(rows[1]["mean_iu"]), (40 / 60 + 20 / 40) / 2)
    assert rows[1]["iu_pot|plant"] == "" and float(rows[0]["iu_pot|plant"]) == 1.0
    assert rows[1]["version"] == "" and rows[0]["version"] == "1"


def test_comparison_and_evaluation_files_are_real_pngs_and_tables():
    evaluations = [_evaluation("a.pt", PERFECT), _evaluation("b.pt", HALF), _evaluation("c.pt", HALF, speed=math.nan)]
    files = comparison_files(evaluations)
    assert set(files) == {"comparison.md", "comparison.csv", "per_class_iu.png", "mean_iu_vs_images_per_second.png"}
    for name in ("per_class_iu.png", "mean_iu_vs_images_per_second.png"):
        width, height = _png_size(files[name])
        assert width > 300 and height > 200
    single = evaluation_files(evaluations[1])
    assert _png_size(single["confusion_matrix.png"])[0] > 300
    assert json.loads(single["per_class_iu.json"]) == {"background": 40 / 60, "disc": 20 / 40, "pot|plant": None}
    counts = json.loads(single["confusion_matrix.json"])
    assert counts["matrix"] == HALF and counts["class_names"] == list(CLASSES)


def test_unmeasured_throughput_is_a_dash_not_a_number():
    """NaN images/s (no batch left after each actor's warm-up) must not read as a measured speed."""
    evaluations = [_evaluation("a.pt", PERFECT, speed=12.5), _evaluation("b.pt", HALF, speed=math.nan)]
    lines = comparison_markdown(evaluations).splitlines()
    assert "| a.pt | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 12.5 | 1,234,567 |" in lines
    assert any(line.startswith("| b.pt |") and line.endswith("| — | 1,234,567 |") for line in lines)
    rows = list(csv.DictReader(io.StringIO(comparison_csv(evaluations).decode())))
    assert [row["images_per_second"] for row in rows] == ["12.5", ""]


def test_metrics_use_identifier_safe_class_names():
    metrics = _evaluation("a.pt", HALF).metrics()
    assert {"pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu", "iu_background", "iu_disc",
            "iu_pot_plant", "images_per_second", "parameters", "images"} == set(metrics)


@pytest.mark.parametrize("reference, name", [("models:/fcn@champion", "fcn"), ("models:/fcn-8s/12", "fcn-8s"),
                                             ("runs:/abc/model", None), ("s3://b/fcn.pt", None)])
def test_registered_name(reference, name):
    assert registered_name(reference) == name


def test_promotion_needs_registry_models_of_one_name():
    assert promotion_name(["models:/fcn/1", "models:/fcn@candidate"]) == "fcn"
    with pytest.raises(PromotionError, match="runs:/abc/model is not a registered model"):
        promotion_name(["models:/fcn/1", "runs:/abc/model"])
    with pytest.raises(PromotionError, match="one registered model, got a, b"):
        promotion_name(["models:/a/1", "models:/b/1"])


def test_promotion_follows_mean_iu_and_ties_keep_the_champion():
    good, bad = _evaluation("models:/fcn/2", PERFECT, version="2"), _evaluation("models:/fcn/1", HALF, version="1")
    first = decide_promotion("fcn", [bad, good], champion=None)
    assert first.promote and first.best is good and first.champion_version == "2"
    assert "did not exist" in first.message

    better = decide_promotion("fcn", [good], champion=bad)
    assert better.promote and better.champion_version == "2" and "moved from version 1 to 2" in better.message

    worse = decide_promotion("fcn", [bad], champion=good)
    assert not worse.promote and worse.champion_version == "2" and "stays at version 2" in worse.message

    tie = decide_promotion("fcn", [_evaluation("models:/fcn/3", PERFECT, version="3")], champion=good)
    assert not tie.promote and tie.to_dict()["champion_version"] == "2"

    same = decide_promotion("fcn", [good, bad], champion=good)
    assert not same.promote and "it is the best model here" in same.message
