"""segment_bucket and train_fcn on a cluster of two nodes: work placed on both, results complete.

Both jobs run on one two-node cluster (`ray_two_nodes`, started once for this module): a job that
spreads over two nodes needs a second node, not a fresh one.
"""
import json

import pytest

from fcn_core.checkpoint import load_checkpoint
from jobs import segment_bucket, train_fcn
from tests.jobs.test_train_fcn import TINY, _epochs_on_storage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_nodes_share_the_inference(ray_two_nodes, synthetic_corpus, tmp_path, tiny_checkpoint):
    import ray
    from ray.util.state import list_actors

    output = tmp_path / "out"
    code = segment_bucket.main(["--input", f"{synthetic_corpus.root}/JPEGImages", "--output", str(output),
                                "--model", tiny_checkpoint, "--num-actors", "2", "--cpus-per-actor", "3",
                                "--batch-size", "2", "--no-tracking"])
    assert code == 0
    actors = [a for a in list_actors(detail=True) if "SegmentImages" in (a.class_name or "")]
    assert len({a.node_id for a in actors}) == 2, actors
    assert len(ray.nodes()) == 2
    summary = json.loads((output / "summary.json").read_text())
    assert summary["ok"] == len(synthetic_corpus.train_ids) + len(synthetic_corpus.val_ids)


def test_workers_on_two_nodes_train_together(ray_two_nodes, synthetic_corpus, tmp_path):
    # 3 CPUs per worker on 4-CPU nodes: the two workers cannot share a node.
    argv = ["--data", str(synthetic_corpus.root), "--num-workers", "2", "--epochs", "1", *TINY,
            "--cpus-per-worker", "3", "--storage-path", str(tmp_path), "--name", "two-nodes", "--no-tracking"]
    assert train_fcn.main(argv) == 0
    checkpoint = load_checkpoint(str(_epochs_on_storage(str(tmp_path / "two-nodes"))[0]))
    assert checkpoint.config["training"]["num_workers"] == 2 and checkpoint.training_state["epoch"] == 0
