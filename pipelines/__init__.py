"""Ray building blocks for FCN segmentation at bucket scale, one package per subsystem.

Layers, top to bottom (each imports only those below it; `tests/test_layering.py` checks this with
import-linter, see ``[tool.importlinter]`` in pyproject.toml):

- `pipelines.segmentation` (the streaming job: ``run.run_segmentation``, ``config.SegmentConfig``),
  `pipelines.labelling` (review lists and pages, label formats, labelled sets from corrections),
  `pipelines.training` (``run.run_training``, ``config.TrainConfig``), `pipelines.evaluation`
  (``evaluate.evaluate_reference``, ``compare.compare_models``);
- `pipelines.stats`: the per-image statistics table, its ledger and its committer;
- `pipelines.runtime`: job runner, progress, Ray resources, model inference;
- `pipelines.tracking`: MLflow runs, redaction, models and references;
- `pipelines.io`: storage (``io.storage`` and its ``io.stores`` backends), listing, corpus reading,
  decoding, labelled sets, lineage, the output lock;
- `pipelines.errors` (exported here): every error a user can meet, under one ``UserError``.

This package and its subsystem packages import nothing heavy: a Ray worker imports the one stage it
runs, and a package's ``__init__`` runs before any of its modules.
"""
from pipelines import errors
from pipelines.errors import *  # noqa: F403  (the public errors, as listed in errors.__all__)

__all__ = errors.__all__
