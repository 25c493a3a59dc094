"""How corpus reads are cut into Ray tasks: the defaults `pipelines.io.corpus` and `pipelines.io.labelled` share.

A module of its own, without Ray, so that listing a labelled set (an evaluation's input check) does
not import Ray Data to learn three numbers.
"""
DEFAULT_ROWS_PER_BLOCK = 64
DEFAULT_FETCH_CONCURRENCY = 16
# One CPU per fetch task: its `fetch_concurrency` threads already keep many GETs in flight, and a
# fractional request would let Ray start a worker process per task (dozens on a small machine,
# each importing s3fs: measured 4x slower). Callers that must fit beside training pass less.
FETCH_TASK_CPUS = 1
