"""``module:function`` references: a user's function named on the command line (``--model``, ``--data``).

``module`` is imported as Python would, the current folder first (a console
script's own path lacks it); ``path/to/file.py:function`` loads that file::

    >>> load_function("json:dumps", "--data").__name__
    'dumps'
    >>> load_function("json:nothing", "--data")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: --data json:nothing: json has no function 'nothing'
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gmgraph.config import is_reference
from gmgraph.errors import ConfigError


def load_function(reference: str, flag: str) -> Callable[..., object]:
    """The function ``module:function`` (or ``file.py:function``) names; ``flag`` names the option in errors.

    Raises:
        ConfigError: the module or file cannot be loaded, or has no such function, saying which.
    """
    if not is_reference(reference):
        raise ConfigError(f"{flag} takes module:function (or path/to/file.py:function), got {reference!r}")
    where, name = reference.split(":")
    module = _load_file(where, reference, flag) if where.endswith(".py") else _import(where, reference, flag)
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"{flag} {reference}: {where} has no function {name!r}")
    return function


def call_with(function: Callable[..., object], offered: dict, *, rest: tuple[str, ...] = ()) -> object:
    """``function`` called with the ``offered`` values its signature names; a ``**kwargs`` function also gets
    the names in ``rest`` (those its kind passes on safely).

    >>> call_with(lambda a, c=0: (a, c), {"a": 1, "b": 2, "c": 3})
    (1, 3)
    """
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return function(**{k: v for k, v in offered.items() if k in parameters or (takes_any and k in rest)})


def _import(module: str, reference: str, flag: str):
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{flag} {reference}: cannot import {module!r} ({exc}); run from the folder that "
                          "holds it or put it on PYTHONPATH") from exc


def _load_file(path: str, reference: str, flag: str):
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{flag} {reference}: no file {file} (from {os.getcwd()})")
    name = f"gmgraph_user_{abs(hash(str(file.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"{flag} {reference}: loading {file} failed: {type(exc).__name__}: {exc}") from exc
    return module
