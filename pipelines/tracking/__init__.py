"""MLflow for every job: where runs go (`client`), what they may record (`redaction`), the runs
themselves (`runs`), models and ``--model`` references (`models`), and the plots runs attach (`plots`).

Import from those modules. This package imports nothing itself: `redaction` is used where MLflow is
not (the statistics committer, Ray actors), and importing a package runs its ``__init__`` first.
"""
