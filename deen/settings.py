"""Settings as data: a tree of small frozen dataclasses, a TOML file and ``KEY=VALUE`` overrides.

A settings class is a frozen dataclass deriving from :class:`Section`. Its leaves are plain
values (``bool``, ``int``, ``float``, ``str``, ``tuple[str, ...]``) declared with
:func:`setting`, which records the help text and the allowed range beside the default, so
that one declaration drives the defaults, the checks (:meth:`Section.__post_init__`), the
printed configuration (:func:`to_toml`) and the errors. A field whose type is another
:class:`Section` is a subsection, addressed with dots: ``matching.threshold``.

:func:`load` builds a tree from its defaults, a TOML file, ``KEY=VALUE`` overrides and
values set by name (the command line's own flags), in that order. Every problem is a
:class:`SettingError` naming the key (``matching.threshold=2: must lie in [-1, 1]``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from deen.errors import BadValueError, DeenError

T = TypeVar("T", bound="Section")


class SettingError(BadValueError):
    """A setting that does not exist, or a value of the wrong type or out of its range.
    ``parameter`` is the dotted key (``matching.threshold``); ``source`` says where the value
    came from when that is known (a settings file's path, or ``overrides``), so that the
    command line can name the flag, ``--set`` or file that gave it."""

    def __init__(self, parameter: str, value: object, problem: str,
                 mentions: tuple[str, ...] = (), source: str | None = None) -> None:
        super().__init__(parameter, value, problem, mentions)
        self.source = source


def setting(default: Any, help: str, *, at_least: float | None = None,
            at_most: float | None = None, above: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """A leaf of a settings class: its default, what it does and the values it takes
    (``at_least``/``at_most`` inclusive bounds, ``above`` an exclusive lower bound,
    ``choices`` the allowed strings)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "at_least": at_least, "at_most": at_most, "above": above,
        "choices": choices})


def _range_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    """Why ``value`` is outside what the field's metadata allows, or None."""
    low, high, above = meta.get("at_least"), meta.get("at_most"), meta.get("above")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(choices)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if low is not None and high is not None and not low <= value <= high:
        return f"must lie in [{low:g}, {high:g}]"
    if low is not None and value < low:
        return f"must be at least {low:g}"
    if high is not None and value > high:
        return f"must be at most {high:g}"
    if above is not None and value <= above:
        return "must be positive" if above == 0 else f"must be above {above:g}"
    return None


class Section:
    """Base of every settings class: checks each leaf against its declared range when an
    instance is made, so that a tree built in Python is checked like one read from a file."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            problem = _range_problem(value, f.metadata)
            if problem is not None:
                raise SettingError(f.name, value, problem)

    def updated(self: T, changes: Mapping[str, Any]) -> T:
        """This tree with the dotted keys of ``changes`` set (checked as when loaded), e.g.
        ``settings.updated({"matching.threshold": 0.6})``."""
        return replace(self, changes)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Section)


def leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """Every leaf of the settings class ``cls``: (dotted key, field, type)."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if _is_section(kind):
            yield from leaves(kind, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, kind


def _type_name(kind: Any) -> str:
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "a string"
    return "a list of strings"


def _is_list(kind: Any) -> bool:
    return typing.get_origin(kind) in (tuple, list) or (
        isinstance(kind, types.GenericAlias) and kind.__origin__ in (tuple, list))


def coerce(key: str, value: Any, kind: Any, given: str) -> Any:
    """``value`` (from TOML, or the text of an override) as the leaf's type ``kind``;
    ``given`` is how the value was given, for the error (``--set key=value``)."""
    text = isinstance(value, str)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if text and value.lower() in ("1", "true", "yes", "on"):
                return True
            if text and value.lower() in ("0", "false", "no", "off"):
                return False
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if text:
                return int(value)
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if text:
                return float(value)
        elif kind is str:
            if text:
                return value
        elif _is_list(kind):
            if text:
                return tuple(v.strip() for v in value.split(",") if v.strip())
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return tuple(value)
    except ValueError:
        pass
    raise SettingError(key, given, f"expected {_type_name(kind)}")


def _build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if _is_section(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], values, f"{key}.")
        elif key in values:
            kwargs[f.name] = values[key]
    try:
        return cls(**kwargs)
    except SettingError as exc:  # a section's own check names its field: add the path
        raise SettingError(f"{prefix}{exc.parameter}", exc.value, exc.problem,
                           exc.mentions) from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _unknown(cls: type, key: str) -> str:
    """The problem of a key ``cls`` has no leaf for: what the nearest section takes."""
    section, _, _ = key.rpartition(".")
    known = [k for k, _, _ in leaves(cls)]
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == section]
    if siblings:
        return f"no such setting ({section or 'the top level'} takes {', '.join(siblings)})"
    sections = sorted({k.partition(".")[0] for k in known if "." in k})
    return f"no such setting (sections: {', '.join(sections)})"


def read_file(cls: type, path: Path) -> dict[str, Any]:
    """A TOML settings file as dotted keys → values of the leaves' types."""
    try:
        table = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SettingError("config", path, "no such settings file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError("config", path, f"cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError("config", path, f"not valid TOML ({exc})") from None
    kinds = {key: kind for key, _, kind in leaves(cls)}
    values = {}
    for key, value in _flatten(table).items():
        if key not in kinds:
            raise SettingError(key, "", _unknown(cls, key), source=str(path))
        try:
            values[key] = coerce(key, value, kinds[key], repr(value))
        except SettingError as exc:
            raise SettingError(key, exc.value, exc.problem, source=str(path)) from None
    return values


def parse_overrides(cls: type, overrides: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts as dotted keys → values of the leaves' types."""
    kinds = {key: kind for key, _, kind in leaves(cls)}
    values = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise SettingError("overrides", item, "expected KEY=VALUE, e.g. "
                               "matching.threshold=0.6", source="overrides")
        if key not in kinds:
            raise SettingError(key, text, _unknown(cls, key), source="overrides")
        try:
            values[key] = coerce(key, text.strip(), kinds[key], text.strip())
        except SettingError as exc:
            raise SettingError(key, exc.value, exc.problem, source="overrides") from None
    return values


def load(cls: type[T], path: Path | None = None, overrides: list[str] = (),
         values: Mapping[str, Any] | None = None) -> T:
    """The settings tree ``cls``: defaults ← the TOML file ``path`` ← ``overrides``
    (``KEY=VALUE``) ← ``values`` (dotted key → value, already typed)."""
    merged: dict[str, Any] = {}
    if path is not None:
        merged.update(read_file(cls, path))
    merged.update(parse_overrides(cls, list(overrides)))
    kinds = {key for key, _, _ in leaves(cls)}
    for key, value in (values or {}).items():
        if key not in kinds:
            raise SettingError(key, value, _unknown(cls, key))
        merged[key] = value
    return _build(cls, merged)


def get(tree: Section, key: str) -> Any:
    """The value of the dotted ``key`` in ``tree``."""
    value: Any = tree
    for part in key.split("."):
        value = getattr(value, part)
    return value


def replace(tree: T, changes: Mapping[str, Any]) -> T:
    """``tree`` with the dotted keys of ``changes`` set (checked as when loaded)."""
    current = {key: get(tree, key) for key, _, _ in leaves(type(tree))}
    unknown = [k for k in changes if k not in current]
    if unknown:
        raise SettingError(unknown[0], changes[unknown[0]], _unknown(type(tree), unknown[0]))
    return _build(type(tree), {**current, **changes})


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_toml(tree: Section) -> str:
    """The tree as a TOML file that :func:`load` reads back to the same tree, each leaf
    with its help as a comment."""
    sections: dict[str, list[str]] = {}
    for key, f, _ in leaves(type(tree)):
        section, _, name = key.rpartition(".")
        help_text = f.metadata.get("help", "")
        line = f"{name} = {_toml_value(get(tree, key))}"
        sections.setdefault(section, []).append(
            f"{line:<34} # {help_text}" if help_text else line)
    out = []
    for section, lines in sections.items():
        if section:
            out.append(f"\n[{section}]")
        out.extend(lines)
    return "\n".join(out).lstrip("\n") + "\n"


def describe(cls: type) -> str:
    """Every key of ``cls`` with its default, one per line (for help texts)."""
    tree = cls()
    return "\n".join(f"{key} = {_toml_value(get(tree, key))}" for key, _, _ in leaves(cls))


__all__ = ["DeenError", "Section", "SettingError", "coerce", "describe", "get", "leaves", "load",
           "parse_overrides", "read_file", "replace", "setting", "to_toml"]
