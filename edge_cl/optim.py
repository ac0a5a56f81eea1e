"""The learner's optimizers, built without torch's start-up cost where the configuration allows.

Every method of ``torch.optim.Optimizer`` that a learner calls (``__init__``'s ``add_param_group``,
``state_dict``, ``load_state_dict``) is wrapped in ``torch._disable_dynamo``, which imports ``torch._dynamo``
on first use: 1-2 s on a small CPU, more than the rest of the learner's start-up together. Plain SGD (no
momentum) keeps no state, so :class:`PlainSGD` -- still a ``torch.optim.SGD``, so schedulers and
``isinstance`` checks work -- builds its one parameter group and reads and writes its (stateless) state dict
directly, in torch's own format; once a user gives it state (momentum set on the group, then a step), it
defers to torch's methods.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any

import torch
from torch import nn

SGD_DEFAULTS = {"momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False, "maximize": False,
                "foreach": None, "differentiable": False, "fused": None}


class PlainSGD(torch.optim.SGD):
    """``torch.optim.SGD(params, lr)`` without momentum, built and (while stateless) saved without torch._dynamo."""

    def __init__(self, params: list[nn.Parameter], lr: float) -> None:
        if not lr >= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        # What Optimizer.__init__ sets, for one group given whole (add_param_group's checks hold by construction:
        # distinct leaf tensors, every default present).
        torch._C._log_api_usage_once("python.optimizer")
        self.defaults = {"lr": lr, **SGD_DEFAULTS}
        self._optimizer_step_pre_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Any] = OrderedDict()
        self._patch_step_function()
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.state: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = [{"params": params, **self.defaults}]
        self._warned_capturable_if_run_uncaptured = True

    def _stateless(self) -> bool:
        return (not self.state and len(self.param_groups) == 1 and not self._optimizer_state_dict_pre_hooks
                and not self._optimizer_state_dict_post_hooks and not self._optimizer_load_state_dict_pre_hooks
                and not self._optimizer_load_state_dict_post_hooks)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        if not self._stateless():
            return super().state_dict()
        group = self.param_groups[0]
        return {"state": {}, "param_groups": [{**{k: v for k, v in group.items() if k != "params"},
                                               "params": list(range(len(group["params"])))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        groups = state_dict.get("param_groups", [])
        if not (self._stateless() and not state_dict.get("state") and len(groups) == 1
                and len(groups[0].get("params", [])) == len(self.param_groups[0]["params"])):
            super().load_state_dict(state_dict)
            return
        saved = {k: v for k, v in groups[0].items() if k != "params"}
        self.param_groups[0].update({**SGD_DEFAULTS, **saved})
