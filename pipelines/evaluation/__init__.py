"""Scoring models on a held-out labelled set, comparing them, and promoting the better one."""
