"""The registry of methods by name, and the ``+`` syntax that combines them ("er+ewc", "der++ + ewc").

Built-in methods register when ``edge_cl.methods`` is imported; a user's method registers with
``@edge_cl.methods.register`` when its module is imported (the learner config's ``plugins`` list and
``edge-cl bench --plugins`` import modules by name), or from an installed package's ``edge_cl.methods``
entry point. ``register_alias`` gives a method a second name (``multihead`` is ``contexts``): it resolves to the
method's own name wherever methods are named, so state files, reports and ``available()`` show that one.
"""

from __future__ import annotations

import importlib
import logging
import re
from importlib.metadata import entry_points
from typing import Any, TypeVar

from edge_cl.methods.base import Method

log = logging.getLogger("edge_cl")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")
ENTRY_POINT_GROUP = "edge_cl.methods"

_REGISTRY: dict[str, type[Method]] = {}
_ALIASES: dict[str, str] = {}  # alias -> the registered name it stands for
_entry_points_loaded = False

M = TypeVar("M", bound=type[Method])


def register(cls: M) -> M:
    """Class decorator: make ``cls`` usable by its ``name`` in the learner, the TOML config and the bench."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith("+") and name.rstrip("+") == "":
        raise ValueError(f"method name {name!r} must be lower case letters, digits and . _ - +, e.g. 'der++'")
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{cls!r} must subclass edge_cl.methods.Method to be registered")
    if name in _ALIASES:
        raise ValueError(f"method name {name!r} is already another name of method {_ALIASES[name]!r}")
    old = _REGISTRY.get(name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"method name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def register_alias(alias: str, name: str) -> None:
    """Make ``alias`` a second name of the registered method ``name`` (configs, the bench, '+' combinations)."""
    if not isinstance(alias, str) or not _NAME.match(alias):
        raise ValueError(f"method alias {alias!r} must be lower case letters, digits and . _ - +")
    if name not in _REGISTRY:
        raise ValueError(f"method alias {alias!r}: {name!r} is not a registered method; register it first")
    if alias in _REGISTRY or _ALIASES.get(alias, name) != name:
        taken = alias if alias in _REGISTRY else _ALIASES[alias]
        raise ValueError(f"method alias {alias!r} is already the name of method {taken!r}")
    _ALIASES[alias] = name


def aliases() -> dict[str, str]:
    """Every alias and the registered method name it stands for."""
    _load_entry_points()
    return dict(_ALIASES)


def unregister(name: str) -> None:
    """Remove a registered method and its aliases (tests and plugin reloads)."""
    _REGISTRY.pop(name, None)
    for alias in [a for a, n in _ALIASES.items() if n == name]:
        del _ALIASES[alias]


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break the built-ins
            log.warning("edge_cl method plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import the named modules so that their ``@register`` decorators run."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ValueError(f"plugins: module {mod!r} cannot be imported ({exc}); it must be importable "
                             "from the daemon's Python (installed, or on PYTHONPATH)") from None


def available() -> list[str]:
    """Names of every registered method (aliases left out: :func:`aliases`)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _offered() -> str:
    also = ", ".join(f"{a} (= {n})" for a, n in sorted(_ALIASES.items()))
    return ", ".join(available()) + (f"; also {also}" if also else "")


def get(name: str) -> type[Method]:
    """The method class registered as ``name`` or an alias of it (case-insensitive)."""
    _load_entry_points()
    key = name.strip().lower()
    cls = _REGISTRY.get(_ALIASES.get(key, key))
    if cls is None:
        raise ValueError(f"method {name!r} is unknown; available: {_offered()} (combine with '+', e.g. 'er+ewc')")
    return cls


def parse(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split a combination into registered names: ``"er+ewc"`` -> ``["er", "ewc"]``.

    Names may themselves contain '+' ("der++"), so the longest registered name wins at each position:
    ``"der+++ewc"`` and ``"der++ + ewc"`` both give ``["der++", "ewc"]``. A list is taken as given. An alias gives
    the name it stands for (``"der++ + multihead"`` -> ``["der++", "contexts"]``).
    """
    _load_entry_points()
    if isinstance(spec, (list, tuple)):
        names = [str(n).strip().lower() for n in spec]
        for n in names:
            get(n)
    else:
        text = re.sub(r"\s+", "", str(spec).lower())
        names, pos = [], 0
        while pos < len(text):
            match = max((n for n in (*_REGISTRY, *_ALIASES) if text.startswith(n, pos)
                         and (pos + len(n) == len(text) or text[pos + len(n)] == "+")), key=len, default=None)
            if match is None:
                rest = text[pos:].split("+")[0] or text[pos:]
                raise ValueError(f"method {spec!r}: {rest!r} is not a registered method; available: "
                                 f"{_offered()} (combine with '+', e.g. 'er+ewc')")
            names.append(match)
            pos += len(match) + 1
    if not names:
        raise ValueError(f"method {spec!r} names no method; available: {_offered()}")
    names = [_ALIASES.get(n, n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"method {spec!r} names a method twice")
    if len(names) > 1 and "sgd" in names:
        names.remove("sgd")  # fine-tuning is what every method does anyway
    return names


def canonical(spec: str | list[str] | tuple[str, ...]) -> str:
    """The normalised spelling of a combination, e.g. ``"ER + EWC"`` -> ``"er+ewc"``."""
    return "+".join(parse(spec))


def settings_for(names: list[str], params: dict[str, object]) -> dict[str, object]:
    """Validated settings of each method in a combination from flat ``params``.

    A parameter goes to every method of the combination that declares it (``importance_lambda`` reaches
    both EWC and MAS in "ewc+mas"); one no method declares is an error naming the ones they do.
    """
    from pydantic import ValidationError

    classes = {n: get(n) for n in names}
    known = {n: set(c.Settings.model_fields) for n, c in classes.items()}
    unknown = [k for k in params if not any(k in ks for ks in known.values())]
    if unknown:
        offered = sorted(set().union(*known.values()))
        raise ValueError(f"method parameter(s) {unknown} are not settings of method {'+'.join(names)!r}; "
                         f"its settings are {offered or 'none'}")
    out: dict[str, object] = {}
    for n, cls in classes.items():
        mine = {k: v for k, v in params.items() if k in known[n]}
        try:
            out[n] = cls.Settings(**mine)
        except ValidationError as exc:
            raise ValueError(f"method {n!r}: {describe_errors(exc)}") from None
    return out


def describe_errors(exc: Any) -> str:
    """A pydantic ValidationError as ``key=value: problem; ...`` (the keyword arguments' spelling)."""
    problems = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}={e.get('input')!r}: {msg}" if loc else msg)
    return "; ".join(problems)
