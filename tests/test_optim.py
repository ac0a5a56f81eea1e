"""PlainSGD is torch.optim.SGD without momentum: the same steps, the same state dict, schedulers work."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch import nn

from edge_cl.optim import PlainSGD


def _params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(4, 3, generator=g)), nn.Parameter(torch.randn(3, generator=g))]


def test_steps_and_state_dict_are_torchs():
    mine, theirs = _params(), _params()
    a, b = PlainSGD(mine, lr=0.1), torch.optim.SGD(theirs, lr=0.1)
    assert isinstance(a, torch.optim.SGD)
    assert a.state_dict() == b.state_dict()
    for _ in range(3):
        for p, q in zip(mine, theirs, strict=True):
            p.grad = torch.ones_like(p) * 0.5
            q.grad = torch.ones_like(q) * 0.5
        a.step()
        b.step()
    assert all(torch.equal(p, q) for p, q in zip(mine, theirs, strict=True))
    b.param_groups[0]["lr"] = 0.02
    a.load_state_dict(b.state_dict())
    assert a.param_groups[0]["lr"] == 0.02 and a.state_dict() == b.state_dict()
    b.load_state_dict(a.state_dict())


def test_a_scheduler_and_momentum_added_later_work():
    params = _params()
    opt = PlainSGD(params, lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.param_groups[0]["momentum"] = 0.9
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.5
    saved = opt.state_dict()  # now with momentum buffers: torch's own path
    assert len(saved["state"]) == 2
    fresh = PlainSGD(_params(), lr=1.0)
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.state[fresh.param_groups[0]["params"][0]]["momentum_buffer"],
                       opt.state[params[0]]["momentum_buffer"])


def test_the_default_learner_imports_nothing_it_does_not_run(tmp_path):
    code = ("import sys, edge_cl\nfrom edge_cl import OnlineLearner, models\n"
            "l = OnlineLearner(models.mlp(6, [8], 3), budget_bytes=100_000, device='cpu')\n"
            "import numpy as np\nl.learn(np.zeros((4, 6), 'float32'), np.zeros(4, 'int64')); l.save(sys.argv[1])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'river', 'onnx', 'onnxruntime', "
            "'paho', 'matplotlib', 'onnxscript', 'amqtt'}), 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "state.pt")], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[] False"
