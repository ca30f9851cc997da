"""A method's hyperparameters: one frozen dataclass per method, stated once.

Each method declares its settings as a frozen dataclass whose defaults are the paper's (with the
source beside each constant); building it with no arguments gives the paper's method. The run
config's method section is derived from it (:func:`to_section`), and read back with its keys and
types checked (:func:`from_section`), so a setting is never restated in a config default, a
constructor and a parser.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Mapping, Optional, TypeVar

import ml_collections
from ml_collections import config_dict

from jaxdistill.core.errors import ConfigError

H = TypeVar("H")


def fields(cls: type) -> dict[str, dataclasses.Field]:
    """The settings fields of a dataclass (``init`` fields), by name."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def to_section(settings: Any) -> ml_collections.ConfigDict:
    """The config section of a settings object: one entry per field, with its value. Optional
    fields that are ``None`` become typed placeholders so overrides keep their type."""
    section = ml_collections.ConfigDict()
    hints = typing.get_type_hints(type(settings))
    for name in fields(type(settings)):
        value = getattr(settings, name)
        if value is None:
            value = config_dict.placeholder(_optional_type(hints[name]))
        section[name] = value
    return section


def from_section(cls: type[H], section: Optional[Mapping[str, Any]], where: str) -> H:
    """``cls`` built from a config section: every key must be a field of ``cls`` (the error names
    the unknown key and the nearest field) and every value must have the field's type; missing
    keys keep ``cls``'s defaults. ``where`` names the section in messages."""
    known = fields(cls)
    hints = typing.get_type_hints(cls)
    values = {} if section is None else dict(section.items())
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {where}.{close[0]}?" if close else f"; its fields are {', '.join(sorted(known))}"
            raise ConfigError(f"unknown setting {where}.{key}{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _optional_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the annotated type ``hint``; a ConfigError naming ``where`` if it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        return _coerce(value, _optional_type(hint), where)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (tuple, list)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], where) for v in value)
            if len(args) == len(value):
                return tuple(_coerce(v, a, where) for a, v in zip(args, value))
    else:
        raise TypeError(f"{where}: unsupported settings type {hint!r}")
    raise ConfigError(f"{where} must be {_type_name(hint)}, got {value!r}")


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_type_name(args[0])}"
        return f"a tuple ({', '.join(_type_name(a) for a in args)})"
    return {bool: "a bool", int: "an int", float: "a number", str: "a string"}.get(hint, str(hint))
