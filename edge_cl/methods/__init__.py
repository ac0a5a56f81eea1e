"""Continual-learning methods as plugins: one file per method, registered by name.

``available()`` lists the names; ``@register`` on a :class:`Method` subclass in any module makes it usable
by name in ``OnlineLearner(method=...)``, the TOML ``[learner]`` table and ``edge-cl bench --methods``.
Combine methods with '+': ``"er+ewc"``; a name may itself contain '+' and the longest registered name wins
at each position, so ``"der+++ewc"`` and ``"der++ + ewc"`` both mean DER++ with online EWC.
"""

from __future__ import annotations

from edge_cl.methods import (  # noqa: F401 - importing registers the built-in methods
    agem,
    cls_er,
    contexts,
    der,
    er,
    er_ace,
    ewc,
    gen_replay,
    latent_replay,
    lwf,
    mas,
    packnet,
    pnn,
    rwalk,
    scp,
    sgd,
    si,
)
from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, SampleField, Segment, Step
from edge_cl.methods.importance import ImportanceMethod, ImportanceSettings
from edge_cl.methods.registry import (
    available,
    canonical,
    describe_errors,
    get,
    import_plugins,
    parse,
    register,
    settings_for,
    unregister,
)

__all__ = [
    "Draw",
    "ImportanceMethod",
    "ImportanceSettings",
    "Method",
    "MethodContext",
    "MethodSettings",
    "SampleField",
    "Segment",
    "Step",
    "available",
    "canonical",
    "describe_errors",
    "get",
    "import_plugins",
    "parse",
    "register",
    "settings_for",
    "unregister",
]
