"""compare_models weighs only scores computed on the same held-out pairs, unless told otherwise."""
import numpy as np
import pytest

from fcn_core.metrics import ConfusionMatrix
from pipelines.errors import IncomparableModelsError
from pipelines.evaluation.compare import check_same_data
from pipelines.evaluation.evaluate import ModelEvaluation
from pipelines.io.lineage import DataInput
from pipelines.tracking.models import ResolvedModel


def scored(version: str, digest: str, rows: int = 10) -> ModelEvaluation:
    return ModelEvaluation(
        model=ResolvedModel(checkpoint_path="/unused.pt", reference=f"models:/fcn/{version}", name="fcn",
                            version=version, run_id=None),
        class_names=("background", "disc"), confusion=ConfusionMatrix.from_matrix(np.eye(2, dtype=np.int64)),
        images=rows, images_per_second=1.0, parameters=1,
        data=DataInput(name="val split of s3://held-out", source="s3://held-out", digest=digest, rows=rows,
                       context="evaluation"))


def test_scores_on_different_data_are_refused_with_both_digests_named():
    with pytest.raises(IncomparableModelsError, match="--allow-different-data") as raised:
        check_same_data([scored("1", "aaaa"), scored("2", "bbbb", rows=11)], allow=False)
    assert "aaaa" in str(raised.value) and "bbbb" in str(raised.value) and "11 pairs" in str(raised.value)


def test_the_same_data_or_an_explicit_allowance_passes():
    check_same_data([scored("1", "aaaa"), scored("2", "aaaa")], allow=False)
    check_same_data([scored("1", "aaaa"), scored("2", "bbbb")], allow=True)
