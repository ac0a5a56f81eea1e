"""Records parameters after 500 seeded steps (run once, at commit 16689ac, before the methods refactor).

Kept as the record of how reference_params_pre_plugins.pt was made: ``python3 tests/methods/record_reference.py``
regenerates it with whatever learner is installed, so do not rerun it unless the reference must change.
"""

import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from edge_cl import OnlineLearner, models
from tests.streams import permuted_prototypes

torch.set_num_threads(1)
CASES = {"sgd": {"importance": None, "replay_batch": 0}, "er": {"importance": None, "replay_batch": 10},
         "er+ewc": {"importance": "ewc", "replay_batch": 10}, "er+mas": {"importance": "mas", "replay_batch": 10}}


def run(kw):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = models.mlp(input_dim=32, hidden=[32], num_classes=10)
    budget = OnlineLearner.required_bytes(model, buffer_samples=200, **kw)
    learner = OnlineLearner(model, budget_bytes=budget, lr=0.1, device="cpu", seed=3,
                            trigger_params={"window": 20}, **kw)
    draw = permuted_prototypes(seed=7)
    for step in range(500):
        x, y = draw(10, 0 if step < 250 else 1)
        learner.learn(x, y)
    params = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in params.values())).hexdigest()
    return params, digest, learner.consolidations


if __name__ == "__main__":
    out = {}
    for name, kw in CASES.items():
        params, digest, cons = run(kw)
        out[name] = {"params": params, "sha256": digest, "consolidations": cons}
        print(name, digest, "consolidations", cons)
    torch.save(out, Path(__file__).with_name("reference_params_pre_plugins.pt"))
