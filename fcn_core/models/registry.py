"""The registries of FCN variants and backbones: builder functions registered by name with a decorator.

A variant is a public builder `fcn8s(num_classes, **options) -> FCN` decorated with `register_model`; a backbone
is a builder `(options) -> Backbone` decorated with `register_backbone`, in the module that defines it. Every list
of names (`build_model`'s errors, `ModelOptions` validation, the training job's `--variant` and `--backbone`
choices) is read from here, so a new backbone is its module plus its import in `fcn_core.models`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

# The registry is a leaf: it imports no model module (they import it to register), and no torch, so that
# listing the names (a job's --help, config validation) costs nothing. Builders are typed where they are defined.
ModelBuilder = TypeVar("ModelBuilder", bound=Callable[..., Any])
BackboneBuilder = TypeVar("BackboneBuilder", bound=Callable[..., Any])

_MODELS: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: its builder, and whether `ModelOptions.width_multiplier` may scale it."""

    name: str
    build: Callable[..., Any]  # (ModelOptions) -> Backbone
    scales_width: bool


_BACKBONES: dict[str, BackboneEntry] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register the decorated `(num_classes, **options) -> FCN` builder as variant `name`."""

    def register(builder: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = builder
        return builder

    return register


def register_backbone(name: str, *, scales_width: bool = False) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Register the decorated `(ModelOptions) -> Backbone` builder as backbone `name`.

    scales_width: the builder honours `width_multiplier`; other backbones come at width 1.0 only (the width of
    their ImageNet weights).
    """

    def register(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = BackboneEntry(name, builder, scales_width)
        return builder

    return register


def list_models() -> list[str]:
    """The names `build_model` accepts, in registration order (coarse to fine)."""
    return list(_MODELS)


def list_backbones() -> list[str]:
    """The names `ModelOptions.backbone` accepts, sorted (backbone modules register in import order)."""
    return sorted(_BACKBONES)


def backbone_entry(name: str) -> BackboneEntry:
    """The registered backbone `name`; ValueError naming the choices otherwise."""
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")
    return _BACKBONES[name]


def model_builder(name: str) -> Callable[..., Any]:
    """The registered builder of variant `name`; ValueError naming the choices otherwise."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}")
    return _MODELS[name]
