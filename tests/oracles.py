"""Oracles shared by tests: tensors reachable from an object, and deep equality of state dicts."""

from __future__ import annotations

from typing import Any

import torch


def reachable_tensors(root: object) -> list[torch.Tensor]:
    """Every tensor reachable from ``root`` through attributes, containers, and ``.grad``.

    An oracle independent of the learner's own bookkeeping: whatever the learner holds, this finds.
    """
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.setdefault(obj.untyped_storage().data_ptr() if obj.numel() else id(obj), obj)
            if obj.grad is not None:
                stack.append(obj.grad)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, (torch.nn.Module, torch.optim.Optimizer)) or _is_project_object(obj):
            stack.extend(vars(obj).values())
    return list(found.values())


def owned_bytes(root: object) -> int:
    """Bytes of every storage reachable from ``root``, each counted once and whole."""
    return sum(t.untyped_storage().nbytes() for t in reachable_tensors(root))


def _is_project_object(obj: object) -> bool:
    # edge_cl's own objects, and methods registered from test modules (tests.*): their attributes are walked.
    module = type(obj).__module__
    return (module.startswith(("edge_cl", "tests")) or module == "__readme__") and hasattr(obj, "__dict__")


# Wall-clock measurements kept in state for reporting; they differ between any two runs by nature.
TIMING_KEYS = frozenset({"seconds"})


def assert_same_state(a: Any, b: Any, path: str = "state", atol: float = 0.0) -> None:
    """Deep equality of nested state (tensors bit-identical unless ``atol``); names the first difference.
    Wall-clock figures (``TIMING_KEYS``) are skipped."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{path}: tensor vs {type(b).__name__}"
        assert a.shape == b.shape and a.dtype == b.dtype, f"{path}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}"
        if atol:
            torch.testing.assert_close(a.cpu(), b.cpu(), atol=atol, rtol=0, msg=f"{path} differs")
        else:
            assert torch.equal(a.cpu(), b.cpu()), f"{path} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(map(str, a))} vs " \
                                                          f"{sorted(map(str, b)) if isinstance(b, dict) else b}"
        for k in a:
            if k not in TIMING_KEYS:
                assert_same_state(a[k], b[k], f"{path}.{k}", atol)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: length {len(a)} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]", atol)
    elif isinstance(a, float) and atol:
        assert abs(a - b) <= atol * 10 or a == b, f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def assert_resumes_bit_identically(learner: Any, model: Any, rest: list[tuple[Any, Any]], folder: Any) -> None:
    """Save ``learner`` to ``folder``, load a twin on the fresh ``model``, learn ``rest`` with both: every method
    tensor and every parameter must come out equal."""
    from edge_cl import OnlineLearner

    learner.save(folder / "state.pt")
    twin = OnlineLearner.load(folder / "state.pt", model=model, device="cpu")
    for x, y in rest:
        learner.learn(x, y)
        twin.learn(x, y)
    for mine, theirs in zip(learner.methods[0].tensors(), twin.methods[0].tensors(), strict=True):
        assert torch.equal(mine, theirs)
    assert all(torch.equal(p, q) for p, q in zip(learner.model.parameters(), twin.model.parameters(), strict=True))
