"""FCN semantic segmentation as tensors in, tensors out: no Ray, no MLflow, no object storage.

The public API, by module (import from these):

- `fcn_core.models`: ``build_model``, ``list_models``, ``FCN``, ``load_backbone_weights`` (the registered
  variants and backbones);
- `fcn_core.checkpoint`: ``save_checkpoint``, ``load_checkpoint``, ``read_checkpoint_metadata``;
- `fcn_core.losses`, `fcn_core.metrics` (``ConfusionMatrix``), `fcn_core.postprocess` (``predict_mask``),
  `fcn_core.transforms`, `fcn_core.normalization`, `fcn_core.masks`, `fcn_core.novelty`, `fcn_core.synthetic`;
- `fcn_core.errors` (exported here): the errors a user can cause, under ``UserError``.

This package imports only its errors: every process that raises or catches a user error imports it
(Ray actors, ``--help``), and a package's ``__init__`` runs before any of its modules, so importing
torch here would make each of them pay for it.
"""
from fcn_core.errors import BackboneWeightsError, CheckpointError, UserError

__all__ = ["BackboneWeightsError", "CheckpointError", "UserError"]
