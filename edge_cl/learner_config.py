"""One configuration schema for a learner: read by ``OnlineLearner``, the daemon's ``[learner]`` table and
``edge-cl bench --config``. Method settings are declared in each method's file and given here flat
(``importance_lambda = 5``), routed to the methods of the combination that declare them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The method a learner runs when no method is named, everywhere (library, daemon, bench, river adapter): DER++,
# the best measured across the bench streams (BENCHMARKS.md, sections *-functional). No other setting changes
# it: a method setting the combination does not declare, or replay_batch=0 for a replaying method, is an
# error. The older keyword importance="ewc" / "mas" / None names a method explicitly: er (+ that importance).
DEFAULT_METHOD = "der++"
# Keywords of the pre-plugin learner that saved states of method 'er' may still carry (dropped on load only).
LEGACY_IMPORTANCE_KEYS = ("importance_lambda", "importance_gamma", "importance_every", "importance_samples")
Storage = Literal["auto", "float32", "float16", "uint8"]
# Defaults that changed (issue #28 item 5: float16 storage, standardize None): what a saved configuration without
# the key was made with.
SAVED_DEFAULTS: dict[str, Any] = {"storage": "float32", "standardize": False}


class LearnerConfig(BaseModel):
    """Everything a learner needs besides the model: what a saved state rebuilds it from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget_bytes: int = Field(..., gt=0, description="Byte budget for all learner state; the buffer gets what "
                                                     "the fixed part leaves.")
    method: str = Field(DEFAULT_METHOD, description="Continual-learning method(s), combined with '+', e.g. "
                                                    "'er', 'er+ewc'; see edge_cl.methods.available().")
    replay_batch: int = Field(10, ge=0, le=65536, description="Samples per replay draw; 0 turns replay off.")
    lr: float = Field(0.1, gt=0, le=10, allow_inf_nan=False, description="Learning rate.")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="'sgd' or 'adam'.")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum.")
    seed: int = Field(0, ge=0, description="Seed of the learner's own generator (buffer, subsampling).")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")
    trigger: str | None = Field("plateau", description="When to consolidate: 'plateau', 'adwin', 'page-hinkley' "
                                                       "or 'none' (see edge_cl.triggers.available_triggers()).")
    trigger_params: dict[str, Any] = Field(default_factory=dict,
                                           description="Trigger settings, e.g. {window = 50} for plateau.")
    storage: Storage = Field("auto", description="Replay buffer input storage. 'auto' (the default): 'float16', "
                                                 "unless the first batch learned is 8-bit data (levels k/255 in "
                                                 "[0, 1], or integers in [0, 255]), which 'uint8' holds exactly in "
                                                 "half float16's bytes (twice the samples; chosen on validation "
                                                 "seeds, BENCHMARKS.md defaults-validation). 'float16': twice the "
                                                 "samples of 'float32' in the same bytes (warns when inputs exceed "
                                                 "+-65504, where it saturates, or when its ~3 significant digits "
                                                 "blur a raw-unit feature); 'float32': exact; 'uint8': 4x, needs "
                                                 "input_range.")
    input_range: tuple[float, float] | None = Field(None, description="[lo, hi] of inputs, needed for uint8.")
    predict: Literal["model", "ncm"] = Field("model", description="'model': the network's own output; 'ncm': "
                                                                 "nearest class mean of its features over the "
                                                                 "buffer (iCaRL; class-incremental streams).")
    class_balanced: bool = Field(False, description="Class-balanced reservoir (CBRS).")
    max_buffer_samples: int | None = Field(None, ge=0, description="Cap the buffer below what the budget allows.")
    input_dim: int | None = Field(None, ge=1, description="Features per sample, for a model without input_dim.")
    max_grad_norm: float | None = Field(5.0, gt=0, description="Gradients with a larger total L2 norm are scaled "
                                                               "down to it: a bound on any one step, whatever the "
                                                               "inputs (None: no bound). 5 chosen on validation "
                                                               "seeds of every bench stream (BENCHMARKS.md): it "
                                                               "stopped DER++ collapsing at lr 0.2 and lost no "
                                                               "stream more than 0.5 points.")
    standardize: bool | None = Field(None, description="Standardise inputs with a running mean / variance per "
                                                        "feature (part of the state, the budget and the ONNX "
                                                        "graph). None (default): for vector inputs (a model "
                                                        "without a multi-dimensional input_shape) the standardiser "
                                                        "is held and charged to the budget, and the first finite "
                                                        "batch learned decides, once (saved in the state): on, "
                                                        "unless the inputs are sparse values in [-1, 1] (a quarter "
                                                        "or more exactly 0: pixels on a blank background, one-hot "
                                                        "codes), which are left as they are; off for image models. "
                                                        "Chosen on validation seeds (BENCHMARKS.md "
                                                        "defaults-validation). True / False: always / never.")
    step_mode: Literal["auto", "eager", "fixed"] = Field(
        "auto", description="'fixed': the step with fixed shapes and no host synchronisation, captured as a CUDA "
                            "graph per micro-batch size bucket on CUDA (edge_cl.fixed_step); 'eager': the "
                            "ordinary step; 'auto': fixed on CUDA when the configuration allows it, else eager.")
    exact_stats: bool = Field(False, description="On the CUDA-graph step, wait for each step to report its own loss "
                                                 "and hits (LearnStats.lag 0) instead of the previous step's (the "
                                                 "daemon always does: it books each batch's result to it).")
    plugins: list[str] = Field(default_factory=list, description="Modules imported first, so that methods they "
                                                                 "@register can be named in 'method'.")
    method_params: dict[str, Any] = Field(default_factory=dict,
                                          description="Settings of the methods (any other key of this table is "
                                                      "one), e.g. importance_lambda.")

    @model_validator(mode="before")
    @classmethod
    def _resolve_method(cls, data: Any) -> Any:
        """Fold legacy ``importance=`` and flat method settings in; spell the method canonically."""
        if not isinstance(data, dict):
            return data
        from edge_cl import methods

        data = dict(data)
        params = dict(data.pop("method_params", None) or {})
        for key in [k for k in data if k not in cls.model_fields and k != "importance"]:
            params[key] = data.pop(key)
        data["method_params"] = {k: v for k, v in params.items() if v is not None}
        methods.import_plugins(list(data.get("plugins") or []))
        if "importance" in data:
            # The older keyword names a method itself: importance="mas" is er+mas (mas alone without replay).
            importance = data.pop("importance")
            if isinstance(importance, str) and importance.strip().lower() in ("none", ""):
                importance = None
            if "method" in data:
                if importance is not None:
                    data["method"] = f"{data['method']}+{importance}"
            else:
                replay = data.get("replay_batch", 10)
                parts = ["er"] if isinstance(replay, int) and replay > 0 else []
                data["method"] = "+".join([*parts, *([str(importance)] if importance is not None else [])]) or "sgd"
        data.setdefault("method", DEFAULT_METHOD)
        if isinstance(data["method"], (list, tuple)):
            data["method"] = "+".join(str(m) for m in data["method"])
        if isinstance(data.get("trigger"), str) and data["trigger"].strip().lower() == "none":
            data["trigger"] = None
        return data

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from edge_cl import methods

        return methods.canonical(v)

    @field_validator("trigger")
    @classmethod
    def _known_trigger(cls, v: str | None) -> str | None:
        from edge_cl import triggers

        if v is not None and v.lower() not in triggers.available_triggers():
            raise ValueError(f"trigger={v!r} is unknown; use one of {triggers.available_triggers()} or 'none'")
        return None if v is None else v.lower()

    @model_validator(mode="after")
    def _check(self) -> LearnerConfig:
        from edge_cl import methods, triggers

        names = methods.parse(self.method)
        declared = {k for n in names for k in methods.get(n).Settings.model_fields}
        unknown = [k for k in self.method_params if k not in declared]
        if unknown:
            raise ValueError(_undeclared_settings(unknown, self.method, declared,
                                                  sorted(k for k in type(self).model_fields if k != "method_params")))
        if self.replay_batch == 0:
            replaying = [n for n in names if methods.get(n).uses_buffer]
            if replaying:
                raise ValueError(f"replay_batch=0 turns replay off, but method {self.method!r} replays "
                                 f"({', '.join(replaying)}); set replay_batch >= 1, or name a method without "
                                 "replay (e.g. 'sgd', 'mas', 'ewc')")
        methods.settings_for(names, self.method_params)
        triggers.make_trigger(self.trigger, **self.trigger_params)
        if self.predict == "ncm" and not self.uses_buffer():
            raise ValueError(f"predict='ncm' takes class means over the replay buffer; method {self.method!r} "
                             f"with replay_batch={self.replay_batch} keeps none (use a replaying method)")
        if self.storage == "uint8" and self.input_range is None:
            raise ValueError("storage='uint8' needs input_range=(lo, hi), the range the inputs are quantised over")
        if self.input_range is not None:
            lo, hi = self.input_range
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"input_range={self.input_range} must be finite with lo < hi")
        return self

    @property
    def method_names(self) -> list[str]:
        """The methods of the combination, in order."""
        from edge_cl import methods

        return methods.parse(self.method)

    def method_settings(self) -> dict[str, Any]:
        """Each method's validated settings."""
        from edge_cl import methods

        return methods.settings_for(self.method_names, self.method_params)

    def uses_buffer(self) -> bool:
        """True when a method of the combination replays and replay_batch > 0."""
        from edge_cl import methods

        return self.replay_batch > 0 and any(methods.get(n).uses_buffer for n in self.method_names)


def _undeclared_settings(unknown: list[str], method: str, declared: set[str], options: list[str]) -> str:
    """The error for settings no method of ``method`` declares: which registered methods do, and how to run one."""
    from edge_cl import methods

    owners = {k: [n for n in methods.available() if k in methods.get(n).Settings.model_fields] for k in unknown}
    parts = []
    for key, names in owners.items():
        if names:
            parts.append(f"{key} is a setting of method{'s' if len(names) > 1 else ''} {', '.join(names)}, and "
                         f"method {method!r} runs none of them: add one to the method (e.g. "
                         f"method='{method}+{names[0]}') or drop {key}")
        else:
            parts.append(f"{key}: unknown key; not a learner option ({', '.join(options)}) nor a setting of method "
                         f"{method!r} ({', '.join(sorted(declared)) or 'it has none'}) or of any other registered "
                         "method")
    return "; ".join(parts)


def saved_config(data: dict[str, Any]) -> LearnerConfig:
    """The configuration a saved state was made with; pre-plugin files may carry importance settings that their
    method ('er') never used, which are dropped here (and only here)."""
    from edge_cl import methods

    data = dict(data)
    # A state saved before a default changed was made with the old one: keys it does not carry take that value.
    for key, old_default in SAVED_DEFAULTS.items():
        data.setdefault(key, old_default)
    params = dict(data.get("method_params") or {})
    if "method" in data:
        try:
            declared = {k for n in methods.parse(data["method"]) for k in methods.get(n).Settings.model_fields}
        except ValueError:
            declared = set()
        params = {k: v for k, v in params.items() if k in declared or k not in LEGACY_IMPORTANCE_KEYS}
    data["method_params"] = params
    return LearnerConfig.model_validate(data)
