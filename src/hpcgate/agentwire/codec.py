"""Typed values to JSON and back, strictly: the one place the wire's JSON meets Python types.

A value is converted by the type it is declared as (a dataclass field's annotation), from a
small closed set: ``str``, ``int``, ``float``, ``bool``, ``bytes`` (base64 text), ``None``,
unions of these, ``tuple[T, ...]``, ``list[T]``, ``dict[str, str]``, ``dict[str, object]``
(any JSON object, checked by whoever reads it) and frozen dataclasses of them. Decoding
accepts nothing else: a missing or unknown field, a wrong type, a bool where a number is
meant, text that is not base64 is a :class:`~.frames.ProtocolError`, never another error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import types
import typing
from typing import Any

from hpcgate.agentwire.frames import ProtocolError

MAX_DEPTH = 8  # dataclasses nest two deep; JSON objects passed through are not walked


def encode(value: Any, hint: Any) -> Any:
    """``value`` (of type ``hint``) as JSON-able data."""
    if hint is bytes:
        return base64.b64encode(value).decode("ascii")
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)  # type: ignore[arg-type]
        return {name: encode(getattr(value, name), kind) for name, kind in hints.items()}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list):
        return [encode(item, args[0]) for item in value]
    if origin in (types.UnionType, typing.Union):
        return encode(value, _arm_of(value, args))
    return dict(value) if origin is dict else value


def decode(raw: Any, hint: Any, where: str = "value", depth: int = 0) -> Any:
    """``raw`` JSON data as a value of type ``hint``; ProtocolError naming ``where``."""
    if depth > MAX_DEPTH:
        raise ProtocolError(f"{where} nests too deep")
    if dataclasses.is_dataclass(hint):
        return _decode_dataclass(raw, hint, where, depth)  # type: ignore[arg-type]
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _decode_union(raw, typing.get_args(hint), where, depth)
    if origin in (tuple, list):
        return _decode_sequence(raw, hint, where, depth)
    if origin is dict:
        return _decode_dict(raw, typing.get_args(hint), where)
    return _decode_plain(raw, hint, where)


def _decode_plain(raw: Any, hint: Any, where: str) -> Any:
    if hint is bytes:
        return _base64(raw, where)
    if hint is float and _is_number(raw):
        return float(raw)
    if hint is int and _is_number(raw) and isinstance(raw, int):
        return raw
    if hint in (str, bool) and type(raw) is hint:
        return raw
    if hint is type(None) and raw is None:
        return None
    raise ProtocolError(f"{where}: expected {_name(hint)}, got {type(raw).__name__}")


def _decode_dataclass(raw: Any, hint: type, where: str, depth: int) -> Any:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: expected an object")
    hints = _hints(hint)
    unknown = set(raw) - set(hints)
    if unknown:
        raise ProtocolError(f"{where}: unknown field(s) {sorted(unknown)}")
    values = {}
    for name, kind in hints.items():
        if name not in raw:
            raise ProtocolError(f"{where}: missing field {name!r}")
        values[name] = decode(raw[name], kind, f"{where}.{name}", depth + 1)
    return hint(**values)


def _decode_union(raw: Any, arms: tuple[Any, ...], where: str, depth: int) -> Any:
    for arm in arms:
        if _json_fits(raw, arm):
            return decode(raw, arm, where, depth)
    raise ProtocolError(f"{where}: expected {' | '.join(_name(arm) for arm in arms)}")


def _decode_sequence(raw: Any, hint: Any, where: str, depth: int) -> Any:
    if not isinstance(raw, list):
        raise ProtocolError(f"{where}: expected a list")
    item = typing.get_args(hint)[0]
    items = [decode(value, item, f"{where}[{i}]", depth + 1) for i, value in enumerate(raw)]
    return tuple(items) if typing.get_origin(hint) is tuple else items


def _decode_dict(raw: Any, args: tuple[Any, ...], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: expected an object")
    if args[1] is str and not all(isinstance(value, str) for value in raw.values()):
        raise ProtocolError(f"{where}: every value must be a string")
    return raw


def _json_fits(raw: Any, arm: Any) -> bool:
    """Whether ``raw``'s JSON type is the one ``arm`` is written as."""
    if dataclasses.is_dataclass(arm) or typing.get_origin(arm) is dict:
        return isinstance(raw, dict)
    if typing.get_origin(arm) in (tuple, list):
        return isinstance(raw, list)
    if arm is type(None):
        return raw is None
    if arm in (bytes, str):
        return isinstance(raw, str)
    return (arm in (int, float) and _is_number(raw)) or (arm is bool and isinstance(raw, bool))


def _arm_of(value: Any, arms: tuple[Any, ...]) -> Any:
    for arm in arms:
        origin = typing.get_origin(arm) or arm
        if isinstance(value, origin) or (value is None and arm is type(None)):
            return arm
    raise TypeError(f"{value!r} is none of {arms}")


def _base64(raw: Any, where: str) -> bytes:
    if not isinstance(raw, str):
        raise ProtocolError(f"{where}: expected base64 text")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{where}: not base64") from None


def _is_number(raw: Any) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    declared = typing.get_type_hints(cls)
    return {field.name: declared[field.name] for field in dataclasses.fields(cls)}
