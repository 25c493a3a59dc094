"""What a model may be called, known without importing torch: registered variants and backbones, alignments.

A job's ``--help`` and the checks of its flags must answer in well under a second, and importing
`fcn_core.models` imports torch (1.5 s or more). So the names registered with ``@register_model`` and
``@register_backbone`` are read here from the model modules' source, which is parsed, not imported.
The registry proper (`fcn_core.models.registry`) is what builds models; a test keeps the two equal.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

ALIGNMENTS = ("reference", "compact")
_MODEL_MODULES = Path(__file__).parent / "models"


@functools.cache
def declared(decorator: str) -> dict[str, dict[str, Any]]:
    """``{name: options}`` of every ``@decorator("name", **options)`` in `fcn_core.models`, in source order.

    Options are the decorator's literal keyword arguments (``scales_width=True``).
    """
    names: dict[str, dict[str, Any]] = {}
    for module in sorted(_MODEL_MODULES.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            for call in getattr(node, "decorator_list", ()):
                if (isinstance(call, ast.Call) and getattr(call.func, "id", None) == decorator and call.args
                        and isinstance(call.args[0], ast.Constant)):
                    names[call.args[0].value] = {keyword.arg: ast.literal_eval(keyword.value)
                                                 for keyword in call.keywords}
    return names


def variant_names() -> list[str]:
    """What `fcn_core.models.list_models()` answers, without importing torch."""
    return list(declared("register_model"))


def backbone_names() -> list[str]:
    """What `fcn_core.models.list_backbones()` answers, without importing torch."""
    return sorted(declared("register_backbone"))


def scales_width(backbone: str) -> bool:
    """Whether `backbone` was registered with ``scales_width=True`` (False for an unknown name)."""
    return bool(declared("register_backbone").get(backbone, {}).get("scales_width", False))
