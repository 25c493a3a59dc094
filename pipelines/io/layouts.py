"""The layouts a labelled corpus may come in (``--layout``), named without importing the readers (Ray, seconds).

What each one means, and how ``auto`` chooses: `pipelines.io.labelled`.
"""
LAYOUTS = ("auto", "voc", "paired", "manifest")
