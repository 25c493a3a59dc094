"""Data-parallel FCN training on Ray Train: data, the per-worker loop, checkpoints, the trainer."""
