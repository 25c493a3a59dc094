"""Moving weights between files and modules: safe file loads, exact loads with a one-line diagnosis, partial copies."""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import IO, Any

import torch
from torch import nn


def _telling_line(error: Exception) -> str:
    """The line of a torch.load error that names the problem (they run to many lines of advice), shortened."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = next((line for line in lines if "Unsupported" in line or "GLOBAL" in line), lines[0] if lines else "")
    return f"{type(error).__name__}: {telling[:160]}" if telling else type(error).__name__


def load_weights_only(
    source: str | os.PathLike[str] | IO[bytes], map_location: str | torch.device = "cpu", mmap: bool = False
) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain containers only, never arbitrary objects.

    Raises ValueError with one line: either the file needs full unpickling (refused, nothing is executed) or it
    is not a torch file at all.
    """
    try:
        return torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise ValueError(
            "was refused by weights-only loading, which unpickles only tensors and plain values "
            f"({_telling_line(error)})"
        ) from error
    except Exception as error:  # arbitrary bytes fail in arbitrary ways (KeyError, EOFError, RuntimeError, ...)
        raise ValueError(f"is not a readable torch file ({_telling_line(error)})") from error


def state_dict_mismatch(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """One line naming missing, unexpected and wrongly shaped keys of `state_dict` for `module`; None if it fits."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshapen = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    problems = [
        f"{label} {', '.join(keys[:3])}{f' (+{len(keys) - 3} more)' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape of", misshapen))
        if keys
    ]
    return "; ".join(problems) or None


def load_exact_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Load `state_dict` into `module`, every key and shape matching; ValueError with one line otherwise."""
    mismatch = state_dict_mismatch(module, state_dict)
    if mismatch is not None:
        raise ValueError(f"weights do not fit {type(module).__name__}: {mismatch}")
    module.load_state_dict(state_dict)
    return list(state_dict)


def initialize_from(model: nn.Module, source: nn.Module | Mapping[str, torch.Tensor]) -> list[str]:
    """Copy every parameter and buffer of `source` whose name and shape match `model`; return the names copied.

    This is the paper's staged training: FCN-16s starts from a trained FCN-32s (backbone, fc6/fc7, score_fr),
    FCN-8s from a trained FCN-16s (also score_pool4 and the 2x upsampler). Layers new to `model` keep their
    initialisation (zero scores, bilinear upsamplers), so at the start it computes what `source` computed.
    """
    source_state = source.state_dict() if isinstance(source, nn.Module) else source
    target_state = model.state_dict()
    matching = {
        key: value
        for key, value in source_state.items()
        if key in target_state and tuple(target_state[key].shape) == tuple(value.shape)
    }
    model.load_state_dict(matching, strict=False)
    return list(matching)
