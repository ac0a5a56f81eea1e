"""Finding the user's own modules: model factories (``model.type = "pkg.mod:fn"``) and method plugins.

``edge-cl`` is a console script, so neither the working directory nor the config file's directory is on the
import path, and a ``my_model.py`` beside the config was not found. :func:`add_search_dir` (called by
``load_config`` when the config names such modules) appends the config file's directory to ``sys.path``:
appended, not prepended, so a file there never shadows the standard library or an installed package. When a
module is still not found, :func:`import_module` says which one, where it looked and how to make it importable.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

# Directories this process appended to sys.path, for the daemon's start-up log.
_added: list[Path] = []


def add_search_dir(directory: str | os.PathLike[str]) -> bool:
    """Append ``directory`` to ``sys.path`` unless it is there already; True when it was added."""
    d = Path(directory).resolve()
    present = {Path(p or os.curdir).resolve() for p in sys.path if isinstance(p, str)}
    if d in present:
        return False
    sys.path.append(str(d))
    importlib.invalidate_caches()  # a finder that listed the directory before must look again
    _added.append(d)
    return True


def added_dirs() -> list[Path]:
    """The directories :func:`add_search_dir` appended in this process."""
    return list(_added)


def origin(module_name: str) -> str:
    """Where module ``module_name`` is (or would be) loaded from, for messages; "" when unknown."""
    mod = sys.modules.get(module_name)
    where = getattr(mod, "__file__", None) if mod is not None else None
    if where is None:
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            spec = None
        where = spec.origin if spec is not None else None
    return str(where) if where and where not in ("built-in", "frozen") else ""


def findable(module_name: str) -> bool:
    """True when ``module_name`` can be found on the import path (without running it)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def searched_dirs() -> list[str]:
    """The directories a top-level import looks in, in order (the working directory shown by name)."""
    found = [os.getcwd() if p == "" else p for p in sys.path if isinstance(p, str) and os.path.isdir(p or os.curdir)]
    return list(dict.fromkeys(found))


def _how_to(top: str) -> str:
    beside = f" ({', '.join(str(d) for d in _added)})" if _added else ""
    return (f"put {top}.py (or a package directory {top}/) beside the config file{beside}, install its package "
            f"into this Python ({sys.executable}) with pip, or add its directory to PYTHONPATH")


def import_module(name: str, key: str) -> ModuleType:
    """Import the user's module ``name`` named by config key ``key``; ValueError saying what to do on failure."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            top = name.split(".")[0]
            raise ValueError(f"{key}: module {name!r} cannot be imported: it is in none of "
                             f"{', '.join(searched_dirs())}. To make it importable, {_how_to(top)}") from None
        raise ValueError(f"{key}: module {name!r} cannot be imported: it imports {missing!r}{_at(exc)}, which is "
                         f"not installed; pip install the package that provides it into {sys.executable}") from None
    except Exception as exc:  # noqa: BLE001 - any error raised by the user's module body
        raise ValueError(f"{key}: module {name!r} cannot be imported: it raised{_at(exc)}: "
                         f"{type(exc).__name__}: {exc}") from None


def load_factory(kind: str, key: str = "model.type") -> Callable[..., Any]:
    """The callable ``"package.module:function"`` names."""
    module_name, _, attr = kind.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ValueError(f"{key} = {kind!r}: a factory is written 'package.module:function', e.g. 'my_model:build'")
    module = import_module(module_name, f"{key} = {kind!r}")
    factory = getattr(module, attr, None)
    if not callable(factory):
        where = origin(module_name)
        raise ValueError(  # noqa: TRY004 - a configuration error: the CLI reports ValueErrors in one line
            f"{key} = {kind!r}: module {module_name!r}{f' ({where})' if where else ''} has no function "
            f"{attr!r}; define def {attr}(**the other [model] keys) -> torch.nn.Module there")
    return factory


def call_factory(kind: str, factory: Callable[..., Any], kwargs: dict[str, Any], key: str = "model") -> Any:
    """``factory(**kwargs)``; a user's error becomes a ValueError naming the factory and where it raised."""
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{key}: factory {kind!r} does not take the keys {sorted(kwargs)} given beside 'type'"
                         f"{_at(exc)}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: report it in one line, not a traceback
        raise ValueError(f"{key}: factory {kind!r} raised{_at(exc)}: {type(exc).__name__}: {exc}") from None


def _at(exc: BaseException) -> str:
    """' at file:line' of the innermost frame of ``exc`` (where the user's code failed), or ''."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename != __file__ and not f.filename.startswith("<")]  # not ours, not importlib's
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
