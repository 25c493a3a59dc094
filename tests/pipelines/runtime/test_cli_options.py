"""Flags read off a config dataclass: types, defaults, choices and help come from the fields, and back."""
import argparse
from dataclasses import dataclass

import pytest

from pipelines.errors import ConfigError
from pipelines.runtime.cli_options import add_options, check_choices, choices_of, config_from_args, option

asked = []


def _sizes() -> list[str]:
    asked.append("sizes")
    return ["small", "large"]


@dataclass
class Recipe:
    source: str = option(help="where from")
    size: str = option("small", choices=_sizes, group="shape", help="how big")
    count: int = option(2, help="how many")
    share: float | None = option(None, help="what share")
    tags: list[str] = option(default_factory=list, metavar="TAG", help="labels (repeatable)")
    span: tuple[float, float] = option((0.5, 2.0), metavar=("LOW", "HIGH"), help="range")
    names: tuple[str, ...] | None = option(None, parse=lambda text: tuple(text.split(",")), help="comma-separated")
    limit: int | None = option(10, parse=lambda text: int(text) or None, help="0 = none")
    loud: bool = option(False, help="say more")
    gpu: bool | None = option(None, help="use a GPU (unset: when there is one)")
    tracking: bool = option(True, off_flag="--no-tracking", help="do not track")
    internal: int = 3  # no flag

    def __post_init__(self) -> None:
        check_choices(self, "size")


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_options(parser, Recipe, **kwargs)
    return parser


def test_defaults_come_from_the_fields_and_round_trip():
    assert config_from_args(Recipe, _parser().parse_args(["--source", "s"])) == Recipe(source="s")


def test_every_kind_of_field_parses():
    args = _parser().parse_args([
        "--source", "s", "--size", "large", "--count", "5", "--share", "0.25", "--tags", "a", "--tags", "b",
        "--span", "1", "3", "--names", "x,y", "--limit", "0", "--loud", "--no-gpu", "--no-tracking",
    ])
    assert config_from_args(Recipe, args) == Recipe(
        source="s", size="large", count=5, share=0.25, tags=["a", "b"], span=(1.0, 3.0), names=("x", "y"),
        limit=None, loud=True, gpu=False, tracking=False,
    )


def test_building_the_parser_asks_no_registry_and_checking_does():
    asked.clear()
    parser = _parser()
    assert asked == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--source", "s", "--size", "huge"])
    assert asked


def test_help_explains_every_flag_with_its_default_and_choices():
    text = _parser().format_help()
    for flag in ("--source", "--count", "--tags TAG", "--span LOW HIGH", "--no-tracking", "--gpu, --no-gpu"):
        assert flag in text
    assert "{small,large}" in text and "(default: 2)" in text
    assert "shape:" in text  # the group
    assert "--internal" not in text and "(default: True)" not in text
    assert all(action.help for action in _parser()._actions)


def test_jobs_exclude_fields_they_fix_and_give_their_own_defaults():
    parser = _parser(exclude=("count", "tracking"), defaults={"size": "large"})
    args = parser.parse_args(["--source", "s"])
    assert not hasattr(args, "count")
    assert config_from_args(Recipe, args, count=7) == Recipe(source="s", size="large", count=7)


def test_validation_names_the_flag_and_the_registered_choices():
    with pytest.raises(ConfigError, match="--size must be one of small, large, got 'huge'"):
        Recipe(source="s", size="huge")
    assert list(choices_of(Recipe, "size")) == ["small", "large"]
