"""One settings schema: frozen dataclasses whose fields are the CLI flags, config keys and checkpoint record.

A settings class declares each field with :func:`setting` (default, help text,
accepted values); nested settings classes are fields too. From that one
declaration come the argparse flags (:func:`add_flags`), the values a config
file may hold (:func:`from_mapping`, flat keys or nested tables), the flags
that start the same run again in another process (:func:`to_flags`), and the
plain record stored in checkpoints and reports (:func:`as_dict`)::

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Inner:
    ...     lr: float = setting(0.1, "learning rate")
    ...     split_at: tuple[int, ...] = setting((2,), "epochs to split at")
    >>> @dataclass(frozen=True)
    ... class Outer:
    ...     seed: int = setting(0, "the seed")
    ...     inner: Inner = nested(Inner)
    >>> s = from_mapping(Outer, {"seed": 3, "lr": 0.5, "split-at": [1, 2]})
    >>> s
    Outer(seed=3, inner=Inner(lr=0.5, split_at=(1, 2)))
    >>> to_flags(s)
    ['--seed', '3', '--lr', '0.5', '--split-at', '1,2']
    >>> from_mapping(Outer, {"inner": {"lr": "fast"}})
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: lr must be a number, got 'fast' (str)

Values are checked in each class's ``__post_init__``, once, when it is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gmgraph.errors import ConfigError


def setting(default: Any, help: str, *, choices: Callable[[], Any] | None = None, flag: str | None = None,
            cli: bool = True) -> Any:
    """A settings field: its default, help text and (optionally) the table its value must name.

    Args:
        default: the default value (immutable: a tuple, not a list).
        help: one line for ``--help``; the default is appended there.
        choices: returns the accepted names (a registry), read when the flag is built.
        flag: the flag's name when it differs from the field's (``--search`` for ``strategy``).
        cli: False keeps the field out of the flags and config keys (set from Python only).
    """
    meta = {"help": help, "choices": choices, "flag": flag, "cli": cli}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def nested(cls: type) -> Any:
    """A field holding a nested settings class (built with its defaults)."""
    return dataclasses.field(default_factory=cls, metadata={"nested": cls})


@dataclass(frozen=True)
class Flag:
    """One command-line flag of a settings class: where its value goes and how it is read."""

    name: str  # the flag without dashes, words joined by '-'
    path: tuple[str, ...]  # field names from the outer class down to the field
    kind: Any  # the field's type
    default: Any
    help: str
    choices: Callable[[], Any] | None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


@functools.cache  # a class's fields never change, and reading its defaults builds one (checks and all)
def flags(cls: type) -> tuple[Flag, ...]:
    """Every flag of ``cls``, nested classes included, in declaration order.

    Raises:
        ConfigError: two fields would share a flag name (a schema bug).
    """
    out = list(_walk(cls, ()))
    seen: dict[str, Flag] = {}
    for f in out:
        if f.name in seen:
            raise ConfigError(f"settings fields {'.'.join(seen[f.name].path)} and {'.'.join(f.path)} "
                              f"both want flag --{f.name}")
        seen[f.name] = f
    return tuple(out)


def _walk(cls: type, prefix: tuple[str, ...]) -> Iterator[Flag]:
    # defaults from the fields, not from cls(): building one runs its checks, and the
    # run-level check looks for the device, which imports torch (help must not)
    for field in dataclasses.fields(cls):
        if field.metadata.get("nested"):
            yield from _walk(field.metadata["nested"], prefix + (field.name,))
        elif field.metadata.get("cli", False):
            name = field.metadata["flag"] or field.name.replace("_", "-")
            yield Flag(name, prefix + (field.name,), _field_type(cls, field), _default(field),
                       field.metadata["help"], field.metadata["choices"])


def _default(field: dataclasses.Field) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    # Annotations are strings under `from __future__ import annotations`: evaluate them where cls was defined.
    if not isinstance(field.type, str):
        return field.type
    return eval(field.type, vars(sys.modules[cls.__module__]))  # noqa: S307 - our own annotations


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per field of ``cls``; a flag not given sets nothing, so a config file can fill it."""
    for f in flags(cls):
        kwargs: dict[str, Any] = {"dest": f.dest, "default": argparse.SUPPRESS, "type": _reader(f),
                                  "help": f"{f.help} (default {flag_text(f.default)})"}
        if f.choices is not None:
            kwargs["metavar"] = "{" + ",".join(f.choices()) + "}"
        parser.add_argument(f"--{f.name}", **kwargs)


def from_flags(cls: type, args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> Any:
    """Settings from parsed flags over ``base`` (a config file's values); flags win."""
    return from_mapping(cls, given(cls, args, base))


def given(cls: type, args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values set explicitly, by flag name: ``base`` (a config file's values), then the flags given.

    >>> from gmgraph.config import SearchSettings
    >>> given(SearchSettings, argparse.Namespace(lr=0.1), {"train": {"epochs": 3}})
    {'epochs': 3, 'lr': 0.1}
    """
    values = dict(_flatten(cls, base or {}))
    for f in flags(cls):
        if hasattr(args, f.dest):  # given on the command line (None too: `--grad-clip none`)
            values[f.name] = getattr(args, f.dest)
    return values


def from_mapping(cls: type, values: Mapping[str, Any]) -> Any:
    """Build ``cls`` from flat keys (flag names, ``-`` or ``_``) or nested tables, checking each type.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a value the class refuses.
    """
    flat = dict(_flatten(cls, values))
    by_name = {f.name: f for f in flags(cls)}
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        f = by_name[name]
        node = tree
        for part in f.path[:-1]:
            node = node.setdefault(part, {})
        node[f.path[-1]] = _coerce(f.name, value, f.kind)
    return _build(cls, tree)


def _flatten(cls: type, values: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"settings must be a table of key = value, got {type(values).__name__}")
    by_name = {f.name: f for f in flags(cls)}
    own = {f.path[-1].replace("_", "-"): f.name for f in by_name.values() if len(f.path) == 1}  # field -> flag
    tables = {f.name: f.metadata["nested"] for f in dataclasses.fields(cls) if f.metadata.get("nested")}
    for raw, value in values.items():
        key = str(raw).replace("_", "-")
        key = own.get(key, key) if key not in by_name else key
        if key.replace("-", "_") in tables and isinstance(value, Mapping):
            yield from _flatten(tables[key.replace("-", "_")], value)
        elif key in by_name:
            yield key, value
        else:
            known = sorted(by_name) + sorted(tables)
            raise ConfigError(f"unknown setting {raw!r}; known settings: {', '.join(known)}")


def _build(cls: type, tree: Mapping[str, Any]) -> Any:
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in tree:
            value = tree[field.name]
            inner = field.metadata.get("nested")
            kwargs[field.name] = _build(inner, value) if inner else value
    return cls(**kwargs)


def to_flags(settings: Any) -> list[str]:
    """The flags that rebuild ``settings`` exactly (for workers started in other processes)."""
    out = []
    for f in flags(type(settings)):
        value = settings
        for part in f.path:
            value = getattr(value, part)
        if value is None and f.default is None:
            continue  # leaving the flag out gives the default back
        out += [f"--{f.name}", "none" if value is None else flag_text(value)]
    return out


def replace_settings(settings: Any, kind: str, **changes: Any) -> Any:
    """``dataclasses.replace(settings, **changes)`` where a key that is no field is a ConfigError naming it.

    The settings class checks the new values as it checks any (its ``__post_init__``); ``kind`` names
    the settings in the error.

    >>> @dataclasses.dataclass(frozen=True)
    ... class Run:
    ...     epochs: int = 1
    ...     lr: float = 0.1
    >>> replace_settings(Run(), "run", epochs=3)
    Run(epochs=3, lr=0.1)
    >>> replace_settings(Run(), "run", epoch=3)
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: unknown run setting(s) ['epoch']; known: epochs, lr
    """
    known = {f.name for f in dataclasses.fields(settings)}
    unknown = set(changes) - known
    if unknown:
        raise ConfigError(f"unknown {kind} setting(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(settings, **changes)


def as_dict(settings: Any) -> dict[str, Any]:
    """A JSON-able record of ``settings`` (nested tables, lists for tuples)."""
    return plain(dataclasses.asdict(settings))


def plain(value: Any) -> Any:
    """``value`` as JSON holds it: every tuple a list, every mapping a dict, at any depth.

    A setting read back from JSON (a checkpoint, settings.json) compares equal to the one written.

    >>> plain({"sizes": (1, (2, 3)), "name": "x"})
    {'sizes': [1, [2, 3]], 'name': 'x'}
    """
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


# -------------------------------------------------------------------- types


def _reader(f: Flag) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            return _coerce(f.name, _parse_text(text, f.kind), f.kind)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    read.__name__ = f.name  # argparse names the flag's type in its errors
    return read


def _parse_text(text: str, kind: Any) -> Any:
    base, optional = _unwrap(kind)
    if optional and text.lower() in ("none", ""):
        return None
    if typing.get_origin(base) is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    if base is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    return text


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """``value`` as the field's type; strings from the command line are converted, others checked."""
    base, optional = _unwrap(kind)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} needs a value")
    if typing.get_origin(base) is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list (e.g. {name} = [10, 20] in a config file, "
                              f"--{name} 10,20 on the command line), got {value!r}")
        item = typing.get_args(base)[0]
        return tuple(_coerce(name, v, item) for v in value)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if base in _NUMBERS:
        accepted, what = _NUMBERS[base]
        try:
            if isinstance(value, str) or (isinstance(value, accepted) and not isinstance(value, bool)):
                return base(value)
        except ValueError:
            pass
        raise ConfigError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    if base is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be text, got {value!r} ({type(value).__name__})")
    return value


_NUMBERS = {int: (int, "an integer"), float: (int | float, "a number")}  # type -> (values taken as is, name)


def _unwrap(kind: Any) -> tuple[Any, bool]:
    """``(type, optional)`` for ``X | None`` and ``Optional[X]``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return (args[0] if len(args) == 1 else kind), len(args) < len(typing.get_args(kind))
    return kind, False


def flag_text(value: Any) -> str:
    """A setting's value as its flag takes it on the command line.

    >>> flag_text(None), flag_text(True), flag_text((1, 2)), flag_text(0.5)
    ('none', 'true', '1,2', '0.5')
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)
