"""Command-line flags read off a config dataclass: each field declares its flag once, in its metadata.

A field made with `option(help=...)` becomes a flag: ``--batch-size`` for ``batch_size``, its type and default
from the field, its help text and choices from the metadata. `add_options` puts a dataclass's flags on a parser
(all of them, or those a job does not fix itself), `config_from_args` builds the config back from the parsed
flags; validation stays in the dataclass's ``__post_init__``. So a new flag is one field, and every job that
takes the config's options gets it:

    @dataclass
    class SegmentConfig:
        batch_size: int = option(8, help="images per inference batch")

Choices may be a function that returns them (a registry's `list_...`), called only when argparse needs them:
when it checks a value or prints ``--help``, not when the parser is built.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

from pipelines.errors import ConfigError

Config = TypeVar("Config")
_METADATA_KEY = "cli"


@dataclass(frozen=True)
class CliOption:
    """How one config field appears on the command line."""

    help: str
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    metavar: str | tuple[str, ...] | None = None
    group: str | None = None  # the argument group its flag is listed under in --help
    parse: Callable[[str], Any] | None = None  # text -> value, when the field's type cannot read it
    # A field whose default is True is turned off by this flag (e.g. "--no-tracking"), never by "--tracking".
    off_flag: str | None = None


def option(default: Any = MISSING, *, help: str, default_factory: Callable[[], Any] | Any = MISSING,
           **cli: Any) -> Any:
    """A dataclass field that is also a flag; keyword arguments besides the defaults are `CliOption`'s."""
    metadata = {_METADATA_KEY: CliOption(help=help, **cli)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class _RegisteredChoices(Sequence[str]):
    """The choices a function returns, asked for on first use (so building a parser imports no registry)."""

    def __init__(self, read: Callable[[], Sequence[str]]) -> None:
        self._read = read

    def _names(self) -> Sequence[str]:
        return self._read()

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()


def cli_option(field: dataclasses.Field) -> CliOption | None:
    """The flag declaration of `field`; None for a field that is no flag."""
    return field.metadata.get(_METADATA_KEY)


def choices_of(config_class: type, name: str) -> Sequence[str]:
    """The allowed values of field `name`, as its flag offers them (read from the registry where it is one)."""
    choices = cli_option(_field(config_class, name)).choices
    return choices() if callable(choices) else choices


def flag_of(field: dataclasses.Field) -> str:
    """The flag that sets `field`: ``--batch-size`` for ``batch_size``, or the off flag declared for it."""
    declared = cli_option(field)
    return declared.off_flag if declared and declared.off_flag else "--" + field.name.replace("_", "-")


def check_choices(config: Any, *names: str) -> None:
    """For `__post_init__`: ConfigError naming the flag of the first of fields `names` whose value its choices
    do not hold (the same choices `--help` offers)."""
    for name in names:
        choices, value = choices_of(type(config), name), getattr(config, name)
        if value not in choices:
            raise ConfigError(f"{flag_of(_field(type(config), name))} must be one of {', '.join(choices)}, "
                              f"got {value!r}")


def add_options(parser: argparse.ArgumentParser, config_class: type, *, exclude: Sequence[str] = (),
                defaults: dict[str, Any] | None = None) -> None:
    """Add a flag for each `option` field of `config_class` but those in `exclude`, in field order.

    defaults: field name -> the default this job gives the flag instead of the field's (its own experiment name).
    """
    hints = typing.get_type_hints(config_class)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in dataclasses.fields(config_class):
        declared = cli_option(field)
        if declared is None or field.name in exclude:
            continue
        target: argparse._ActionsContainer = parser
        if declared.group is not None:
            target = groups.setdefault(declared.group, parser.add_argument_group(declared.group))
        default = _default(field, (defaults or {}).get(field.name, MISSING))
        target.add_argument(flag_of(field), dest=field.name, help=declared.help,
                            **_argument(hints[field.name], default, declared))


def config_from_args(config_class: type[Config], args: argparse.Namespace, **fixed: Any) -> Config:
    """`config_class` from the parsed flags of its `option` fields, plus the values a job fixes itself."""
    hints = typing.get_type_hints(config_class)
    values = {}
    for field in dataclasses.fields(config_class):
        if cli_option(field) is None or not hasattr(args, field.name) or field.name in fixed:
            continue
        value = getattr(args, field.name)
        is_tuple = typing.get_origin(_unwrap_optional(hints[field.name])[0]) is tuple
        values[field.name] = tuple(value) if is_tuple and isinstance(value, list) else value  # nargs gives lists
    return config_class(**values, **fixed)


def _field(config_class: type, name: str) -> dataclasses.Field:
    return next(field for field in dataclasses.fields(config_class) if field.name == name)


def _default(field: dataclasses.Field, job_default: Any) -> Any:
    if job_default is not MISSING:
        return job_default
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING  # a required flag


def _argument(annotation: Any, default: Any, declared: CliOption) -> dict[str, Any]:
    """`add_argument`'s keywords for a field of type `annotation` with flag default `default`."""
    kind, optional = _unwrap_optional(annotation)
    argument: dict[str, Any] = {"default": None if default is MISSING else default}
    if default is MISSING:
        argument["required"] = True
    if declared.metavar is not None:
        argument["metavar"] = declared.metavar
    if declared.choices is not None:
        choices = declared.choices
        argument["choices"] = _RegisteredChoices(choices) if callable(choices) else choices
    if kind is bool:
        if optional:
            argument["action"] = argparse.BooleanOptionalAction
        else:
            argument["action"] = "store_false" if declared.off_flag else "store_true"
            argument.pop("metavar", None)
            if declared.off_flag:
                # Absent unless given, so --help says no "(default: True)" of a flag that turns it off.
                argument["default"] = argparse.SUPPRESS
        return argument
    origin, parameters = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        argument.update(action="append", type=declared.parse or parameters[0], default=list(default or []))
    elif origin is tuple and declared.parse is None:
        argument.update(type=parameters[0], nargs=len(parameters))
    else:
        argument["type"] = declared.parse or kind
    return argument


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """`(X, True)` for `X | None`, `(X, False)` for `X`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0], True
    return annotation, False
