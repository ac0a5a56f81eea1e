"""Fleet benchmark (issue #24): N devices, each an OnlineLearner (default method, equal byte budget) seeing its own
non-IID drifting part of rotated-MNIST (its own rotations, in its own order), against isolated devices (no rounds)
and one central learner fed the union with N budgets.

Transport. The accuracy runs (8 devices, seeds 0-2, and the validation grids) run their rounds in-process: every K
steps, the sample-weighted FedAvg of the devices' weights (:func:`edge_cl.fleet.aggregate.sample_weighted_average`,
the function the ServerApp's strategy calls) and the server's step from the previous global model towards it
(:func:`edge_cl.fleet.aggregate.server_step`, rate ``lr``, the ServerApp's ``server-lr``), then each device merges
``w = a * w_global + (1 - a) * w_local`` (:func:`edge_cl.fleet.aggregate.blend` and
:func:`edge_cl.fleet.merge.merge_global`, the daemon's merge) and refreshes what ``--refresh-after-merge`` names
(:func:`edge_cl.fleet.refresh.refresh_after_merge`). Why: a real SuperLink costs every round two ClientApp
processes per device (Flower starts one per message: seconds a round on a shared 2-core machine, BENCHMARKS.md
fleet-superlink), so 8 devices x 1,200 rounds x 6 seeds do not fit, and Flower's simulation engine needs ray. ``--transport
superlink`` runs one setting's rounds through a real SuperLink and SuperNodes on loopback for fewer devices and
rounds (``benchmarks/fleet_superlink.py``), beside the in-process run of the same seed: it ends on the same weights
up to float32 rounding (the order Flower hands the replies over in), and measures what the in-process run cannot, Flower's bytes on the wire and its round latency.
``a``, K and ``lr`` are chosen on validation seeds (100-102), results are reported on seeds 0-2.

    python benchmarks/fleet.py [--devices 8] [--scale 0.1] [--write-benchmarks]
    python benchmarks/fleet.py --quick          # tiny run, prints JSON, writes nothing
    python benchmarks/fleet.py --compare-refresh --val-seeds 100,101 --methods der++,der+++ewc \\
        --refresh-after-merge none,logits,anchors,both --a 1 --every 20 --server-lr 1 --scale 0.05
    python benchmarks/fleet.py --transport superlink --devices 3 --scale 0.01 --seeds 0 --a 1 --every 20 \\
        --server-lr 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edge_cl.bench.runner import BenchConfig, _budget_for, build_model, default_model_spec, evaluate
from edge_cl.bench.streams import TaskStream, make_stream
from edge_cl.fleet import wire
from edge_cl.fleet.aggregate import blend, sample_weighted_average, server_step
from edge_cl.fleet.merge import local_weights, merge_global
from edge_cl.fleet.refresh import REFRESH_CHOICES, refresh_after_merge
from edge_cl.learner import OnlineLearner
from edge_cl.learner_config import DEFAULT_METHOD

STREAM = "rotated-mnist"
BATCH = 10
TARGET_GAIN, TARGET_CENTRAL_GAP, TARGET_OWN_DROP = 15.0, 3.0, 1.0  # points (issue #24)


@dataclass
class FleetRun:
    """What one run of a fleet (or of isolated devices) measured."""

    acc: list[list[float]]          # acc[d][c]: device d on concept c, after the stream
    own: list[list[int]]            # concepts each device saw, in its order
    rounds: int = 0
    up_bytes: list[int] = field(default_factory=list)    # per device per round: encoded weights sent
    down_bytes: list[int] = field(default_factory=list)  # per device per round: encoded global model received
    round_s: list[float] = field(default_factory=list)   # aggregation, encoding, every merge; no transport
    model_bytes: int = 0            # raw float32 bytes of the trainable parameters
    weights: list[dict[str, np.ndarray]] = field(default_factory=list)  # each device's, after the stream

    def per_device(self) -> list[dict[str, float]]:
        """Per device: own-concept accuracy (retention), others' concepts (transfer), all concepts."""
        out = []
        for d, accs in enumerate(self.acc):
            mine = set(self.own[d])
            others = [a for c, a in enumerate(accs) if c not in mine]
            out.append({"own": 100 * float(np.mean([accs[c] for c in mine])),
                        "transfer": 100 * float(np.mean(others)) if others else float("nan"),
                        "all": 100 * float(np.mean(accs))})
        return out


def assign_concepts(num_devices: int, per_device: int, seed: int) -> list[list[int]]:
    """Each device its own ``per_device`` concepts (disjoint), in its own order; seeded."""
    rng = np.random.default_rng(seed + 7919)
    ids = rng.permutation(num_devices * per_device)
    return [[int(c) for c in ids[d * per_device:(d + 1) * per_device]] for d in range(num_devices)]


def make_learner(spec: dict[str, Any], budget: int, seed: int, device_seed: int,
                 method: str = DEFAULT_METHOD) -> OnlineLearner:
    """A device's learner: ``method`` (the default one unless told), ``budget`` bytes; every device starts from
    the same model."""
    return OnlineLearner(build_model(spec, seed), budget_bytes=budget, seed=device_seed, device="cpu", method=method)


def device_budget(spec: dict[str, Any], budget_samples: int, method: str = DEFAULT_METHOD) -> int:
    """One device's bytes: the bench's rule (fixed state + ``budget_samples`` float32 samples) for ``method``."""
    cfg = BenchConfig(stream=STREAM, methods=[method], budget_samples=budget_samples).resolved()
    return _budget_for(cfg, spec, method)


def fleet_round(learners: list[OnlineLearner], samples: list[int], a: float, server_lr: float = 1.0,
                previous: dict[str, np.ndarray] | None = None,
                refresh: str = "none") -> tuple[list[int], list[int], dict[str, np.ndarray] | None]:
    """One round in process: FedAvg of the learners' weights by ``samples``, the server's step of rate ``server_lr``
    from ``previous`` (the last global model) towards it, then each device merges with weight ``a`` and refreshes
    ``refresh`` (:func:`edge_cl.fleet.refresh.refresh_after_merge`, the daemon's ``fleet.refresh_after_merge``).

    Returns the encoded bytes each device would send up and receive down, and the new global model (``previous``
    when no device learned anything: that round keeps every model, as the ServerApp does).
    """
    models = [local_weights(lrn) for lrn in learners]
    up = [len(wire.encode(m)) for m in models]
    average = sample_weighted_average(models, samples)
    if average is None:
        return up, [0] * len(learners), previous
    glob = server_step(previous, average, server_lr)
    down_payload = len(wire.encode(glob))
    for lrn, mine in zip(learners, models, strict=True):
        merge_global(lrn, blend(glob, mine, a))
        refresh_after_merge(lrn, refresh)
    return up, [down_payload] * len(learners), glob


def run_devices(stream: TaskStream, own: list[list[int]], spec: dict[str, Any], budget: int, seed: int,
                every: int | None, a: float, server_lr: float = 1.0, refresh: str = "none",
                method: str = DEFAULT_METHOD) -> FleetRun:
    """Devices stepping in lock-step over their own concepts; a round every ``every`` steps (None: isolated)."""
    learners = [make_learner(spec, budget, seed, 1000 * seed + d, method) for d in range(len(own))]
    data = [_device_stream(stream, concepts) for concepts in own]
    steps = min(len(y) for _, y in data) // BATCH
    run = FleetRun(acc=[], own=own, model_bytes=sum(v.nbytes for v in local_weights(learners[0]).values()))
    since = [0] * len(learners)
    glob: dict[str, np.ndarray] | None = None
    for i in range(steps):
        for d, (lrn, (x, y)) in enumerate(zip(learners, data, strict=True)):
            lrn.learn(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
            since[d] += BATCH
        if every is not None and ((i + 1) % every == 0 or i + 1 == steps):
            t0 = time.perf_counter()
            up, down, glob = fleet_round(learners, since, a, server_lr, glob, refresh)
            run.round_s.append(time.perf_counter() - t0)
            run.up_bytes += up
            run.down_bytes += down
            run.rounds += 1
            since = [0] * len(learners)
    run.acc = [[evaluate(lrn, *stream.test(c)) for c in range(stream.num_tasks)] for lrn in learners]
    run.weights = [local_weights(lrn) for lrn in learners]
    return run


def run_devices_superlink(stream: TaskStream, own: list[list[int]], spec: dict[str, Any], budget: int, seed: int,
                          every: int, a: float, server_lr: float, refresh: str = "none",
                          method: str = DEFAULT_METHOD) -> tuple[FleetRun, dict[str, Any]]:
    """:func:`run_devices` with its rounds through a real SuperLink and SuperNodes (``benchmarks/fleet_superlink.py``);
    the run, and what Flower's rounds cost (wire and payload bytes per device and round, round latency)."""
    import tempfile
    from pathlib import Path

    here = Path(__file__).resolve().parent
    for path in (str(here), str(here.parent)):  # fleet_superlink beside this file; tests.fleet's process helpers
        if path not in sys.path:
            sys.path.insert(0, path)
    from fleet_superlink import run_rounds

    learners = [make_learner(spec, budget, seed, 1000 * seed + d, method) for d in range(len(own))]
    data = [_device_stream(stream, concepts) for concepts in own]
    steps = min(len(y) for _, y in data) // BATCH
    run = FleetRun(acc=[], own=own, model_bytes=sum(v.nbytes for v in local_weights(learners[0]).values()))
    with tempfile.TemporaryDirectory(prefix="edge-cl-fleet-") as tmp:
        flower = run_rounds(learners, data, steps, every, BATCH, a, server_lr, refresh, Path(tmp))
    run.rounds = flower["rounds"]
    run.round_s = list(flower["round_s"])
    run.acc = [[evaluate(lrn, *stream.test(c)) for c in range(stream.num_tasks)] for lrn in learners]
    run.weights = [local_weights(lrn) for lrn in learners]
    return run, flower


def run_central(stream: TaskStream, own: list[list[int]], spec: dict[str, Any], budget: int, seed: int) -> float:
    """One learner with ``len(own)`` budgets fed the union in the fleet's time order; mean accuracy (points)."""
    lrn = make_learner(spec, budget * len(own), seed, 1000 * seed + 999)
    data = [_device_stream(stream, concepts) for concepts in own]
    steps = min(len(y) for _, y in data) // BATCH
    for i in range(steps):
        for x, y in data:  # step i of every device, one after the other: what the fleet saw, as it arrived
            lrn.learn(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
    return 100 * float(np.mean([evaluate(lrn, *stream.test(c)) for c in range(stream.num_tasks)]))


def _device_stream(stream: TaskStream, concepts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [stream.train(c) for c in concepts]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def one_seed(seed: int, devices: int, per_device: int, scale: float, budget_samples: int,
             settings: list[tuple[float, int, float]], with_baselines: bool = True,
             refresh: str = "none") -> dict[str, Any]:
    """Fleet runs for each ``(a, K, lr)`` of ``settings`` and (optionally) isolated and central, on one seed."""
    stream = make_stream(STREAM, scale=scale, seed=seed, num_tasks=devices * per_device)
    assert isinstance(stream, TaskStream)
    spec = default_model_spec(stream.input_dim, stream.num_classes)
    budget = device_budget(spec, budget_samples)
    own = assign_concepts(devices, per_device, seed)
    out: dict[str, Any] = {"seed": seed, "budget_bytes": budget, "fleet": {}}
    for a, k, lr in settings:
        run = run_devices(stream, own, spec, budget, seed, k, a, lr, refresh)
        out["fleet"][setting_name(a, k, lr)] = _summary(run)
    if with_baselines:
        out["isolated"] = _summary(run_devices(stream, own, spec, budget, seed, None, 0.0))
        out["central"] = run_central(stream, own, spec, budget, seed)
    return out


def _summary(run: FleetRun) -> dict[str, Any]:
    per = run.per_device()
    return {"per_device": per, "mean_all": float(np.mean([p["all"] for p in per])),
            "mean_own": float(np.mean([p["own"] for p in per])),
            "mean_transfer": float(np.mean([p["transfer"] for p in per])),
            "rounds": run.rounds, "model_bytes": run.model_bytes,
            "up_bytes_max": max(run.up_bytes, default=0), "down_bytes_max": max(run.down_bytes, default=0),
            "round_ms_median": 1000 * statistics.median(run.round_s) if run.round_s else None}


def verdict(fleet: dict[str, Any], isolated: dict[str, Any], central: float) -> dict[str, bool]:
    """The issue's targets on one (seed-averaged) result."""
    own_ok = all(f["own"] >= i["own"] - TARGET_OWN_DROP
                 for f, i in zip(fleet["per_device"], isolated["per_device"], strict=True))
    return {"gain": fleet["mean_all"] >= isolated["mean_all"] + TARGET_GAIN,
            "central": fleet["mean_all"] >= central - TARGET_CENTRAL_GAP, "own": own_ok,
            "bytes": fleet["up_bytes_max"] <= fleet["payload_bytes"] and fleet["down_bytes_max"] <= fleet["payload_bytes"]}


def average(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Seed mean of :func:`_summary` results (per device index, and the fleet means)."""
    n = len(runs[0]["per_device"])
    per = [{k: float(np.mean([r["per_device"][d][k] for r in runs])) for k in ("own", "transfer", "all")}
           for d in range(n)]
    out = {"per_device": per, **{k: float(np.mean([r[k] for r in runs]))
                                 for k in ("mean_all", "mean_own", "mean_transfer")},
           "rounds": runs[0]["rounds"], "model_bytes": runs[0]["model_bytes"],
           "up_bytes_max": max(r["up_bytes_max"] for r in runs), "down_bytes_max": max(r["down_bytes_max"] for r in runs)}
    lat = [r["round_ms_median"] for r in runs if r["round_ms_median"] is not None]
    out["round_ms_median"] = float(np.median(lat)) if lat else None
    return out


def choose(val: list[dict[str, Any]], payload: int) -> tuple[str, list[dict[str, Any]]]:
    """The setting meeting the most targets on the validation seeds (ties: higher fleet mean), with the table."""
    iso = average([v["isolated"] for v in val])
    central = float(np.mean([v["central"] for v in val]))
    table = []
    for name in val[0]["fleet"]:
        f = average([v["fleet"][name] for v in val])
        f["payload_bytes"] = payload
        ok = verdict(f, iso, central)
        drop = max(i["own"] - fd["own"] for fd, i in zip(f["per_device"], iso["per_device"], strict=True))
        table.append({"setting": name, "mean_all": f["mean_all"], "mean_own": f["mean_own"],
                      "central_gap": central - f["mean_all"], "own_drop": drop, "met": sum(ok.values()),
                      "verdict": ok})
    best = max(table, key=lambda r: (r["met"], r["mean_all"]))
    return str(best["setting"]), table


def payload_bytes(budget_samples: int) -> int:
    """Bytes of one encoded model: the wire payload of the benchmark's model (MNIST's 784 inputs, 10 classes)."""
    spec = default_model_spec(784, 10)
    return len(wire.encode(local_weights(make_learner(spec, device_budget(spec, budget_samples), 0, 0))))


def parse_settings(a_values: str, k_values: str, lr_values: str = "1") -> list[tuple[float, int, float]]:
    return [(float(a), int(k), float(lr)) for a in a_values.split(",") for k in k_values.split(",")
            for lr in lr_values.split(",")]


def setting_name(a: float, k: int, lr: float) -> str:
    return f"a={a:g},K={k},lr={lr:g}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--concepts-per-device", type=int, default=2)
    p.add_argument("--scale", type=float, default=0.1, help="fraction of MNIST's 60k samples per concept")
    p.add_argument("--budget-samples", type=int, default=500, help="each device's buffer, in float32 samples")
    p.add_argument("--a", default="1.0", help="merge weights to validate, comma-separated")
    p.add_argument("--every", default="1,2", help="round periods K (steps) to validate, comma-separated")
    p.add_argument("--server-lr", default="1,2,3", help="server learning rates to validate, comma-separated")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--val-seeds", default="100,101,102")
    p.add_argument("--refresh-after-merge", default="none",
                   help=f"what each merge refreshes ({' / '.join(REFRESH_CHOICES)}); with --compare-refresh a "
                        "comma-separated list to compare")
    p.add_argument("--methods", default=DEFAULT_METHOD,
                   help="with --compare-refresh: the devices' methods, comma-separated (e.g. der++,der+++ewc)")
    p.add_argument("--compare-refresh", action="store_true",
                   help="compare --refresh-after-merge values on --val-seeds only (one a, K, lr; no baselines); "
                        "writes section fleet-refresh-k<K>")
    p.add_argument("--transport", choices=("inprocess", "superlink"), default="inprocess",
                   help="superlink: the rounds of one a, K, lr through a real SuperLink and SuperNodes on loopback, "
                        "beside the same run in-process, on --seeds (writes section fleet-superlink)")
    p.add_argument("--quick", action="store_true", help="tiny run (4 devices, scale 0.01, one seed each)")
    p.add_argument("--write-benchmarks", action="store_true")
    p.add_argument("--json", help="write the full results here")
    args = p.parse_args(argv)
    if args.quick:
        args.devices, args.scale, args.seeds, args.val_seeds, args.a, args.every = 4, 0.01, "0", "100", "1.0", "10"
        args.server_lr = "1"
    torch.set_num_threads(1)  # 2 shared cores: one thread each is faster than contention
    if args.compare_refresh:
        return compare_refresh(args)
    if args.transport == "superlink":
        return superlink_transport(args)
    if args.refresh_after_merge not in REFRESH_CHOICES:
        p.error(f"--refresh-after-merge {args.refresh_after_merge!r}: give one of {', '.join(REFRESH_CHOICES)} "
                "(a list only with --compare-refresh)")
    settings = parse_settings(args.a, args.every, args.server_lr)
    seeds = [int(s) for s in args.seeds.split(",")]
    val_seeds = [int(s) for s in args.val_seeds.split(",")]
    t0 = time.perf_counter()
    payload = payload_bytes(args.budget_samples)
    val = [one_seed(s, args.devices, args.concepts_per_device, args.scale, args.budget_samples, settings,
                    refresh=args.refresh_after_merge) for s in val_seeds]
    chosen, table = choose(val, payload)
    a, k, lr = next(s for s in settings if setting_name(*s) == chosen)
    test = [one_seed(s, args.devices, args.concepts_per_device, args.scale, args.budget_samples, [(a, k, lr)],
                     refresh=args.refresh_after_merge) for s in seeds]
    fleet = average([t["fleet"][chosen] for t in test])
    fleet["payload_bytes"] = payload
    iso = average([t["isolated"] for t in test])
    central = float(np.mean([t["central"] for t in test]))
    doc = {"devices": args.devices, "concepts_per_device": args.concepts_per_device, "scale": args.scale,
           "budget_samples": args.budget_samples, "budget_bytes": test[0]["budget_bytes"], "method": DEFAULT_METHOD,
           "chosen": chosen, "validation": table, "seeds": seeds, "val_seeds": val_seeds, "fleet": fleet,
           "isolated": iso, "central": central, "central_per_seed": [t["central"] for t in test],
           "fleet_mean_per_seed": [t["fleet"][chosen]["mean_all"] for t in test],
           "isolated_mean_per_seed": [t["isolated"]["mean_all"] for t in test],
           "verdict": verdict(fleet, iso, central), "wall_s": time.perf_counter() - t0}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    if args.write_benchmarks and not args.quick:
        from edge_cl.reporting import write_section

        write_section("fleet", render(doc), "python " + shlex.join(["benchmarks/fleet.py", *sys.argv[1:]]))
    print(json.dumps({k: doc[k] for k in ("chosen", "verdict", "central", "wall_s")} |
                     {"fleet_mean": fleet["mean_all"], "isolated_mean": iso["mean_all"]}, indent=1))
    return 0


def applicable_refreshes(method: str, spec: dict[str, Any], budget: int, wanted: list[str]) -> list[str]:
    """The values of ``wanted`` that differ for ``method``: without DER ``logits`` refreshes nothing, without an
    importance method ``anchors`` nothing (such a run would repeat ``none`` or ``logits``)."""
    from edge_cl.methods.der import DER
    from edge_cl.methods.importance import ImportanceMethod

    lrn = make_learner(spec, budget, 0, 0, method)
    der = any(isinstance(m, DER) for m in lrn.methods)
    imp = any(isinstance(m, ImportanceMethod) for m in lrn.methods)
    same = {"logits": "none" if not der else "logits", "anchors": "none" if not imp else "anchors",
            "both": {(True, True): "both", (True, False): "logits", (False, True): "anchors"}.get((der, imp), "none")}
    out: list[str] = []
    for r in wanted:
        if same.get(r, r) == r and r not in out:
            out.append(r)
    return out


def compare_refresh(args: argparse.Namespace) -> int:
    """Fleet runs with each ``--refresh-after-merge`` value, for each of ``--methods``, on the validation seeds
    (one a, K, lr); the mean over seeds per method and value, and the refresh's share of the round latency."""
    wanted = [r.strip() for r in args.refresh_after_merge.split(",")]
    bad = [r for r in wanted if r not in REFRESH_CHOICES]
    if bad:
        raise SystemExit(f"--refresh-after-merge {bad}: each must be one of {', '.join(REFRESH_CHOICES)}")
    settings = parse_settings(args.a, args.every, args.server_lr)
    if len(settings) != 1:
        raise SystemExit("--compare-refresh takes one --a, one --every and one --server-lr (the fleet's setting)")
    (a, k, lr), = settings
    methods = [m.strip() for m in args.methods.split(",")]
    seeds = [int(s) for s in args.val_seeds.split(",")]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for method in methods:
        per_seed: dict[str, list[dict[str, Any]]] = {}
        for seed in seeds:
            stream = make_stream(STREAM, scale=args.scale, seed=seed, num_tasks=args.devices * args.concepts_per_device)
            assert isinstance(stream, TaskStream)
            spec = default_model_spec(stream.input_dim, stream.num_classes)
            budget = device_budget(spec, args.budget_samples, method)
            own = assign_concepts(args.devices, args.concepts_per_device, seed)
            for refresh in applicable_refreshes(method, spec, budget, wanted):
                run = run_devices(stream, own, spec, budget, seed, k, a, lr, refresh, method)
                per_seed.setdefault(refresh, []).append(_summary(run) | {"seed": seed})
                print(f"{method} refresh={refresh} seed {seed}: {per_seed[refresh][-1]['mean_all']:.2f}",
                      file=sys.stderr, flush=True)
        for refresh, runs in per_seed.items():
            avg = average(runs)
            rows.append({"method": method, "refresh": refresh, "mean_all": avg["mean_all"],
                         "mean_own": avg["mean_own"], "mean_transfer": avg["mean_transfer"],
                         "per_seed": [r["mean_all"] for r in runs], "round_ms_median": avg["round_ms_median"],
                         "rounds": avg["rounds"]})
    doc = {"devices": args.devices, "concepts_per_device": args.concepts_per_device, "scale": args.scale,
           "budget_samples": args.budget_samples, "setting": setting_name(a, k, lr), "val_seeds": seeds,
           "rows": rows, "best": best_refresh(rows), "wall_s": time.perf_counter() - t0}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    if args.write_benchmarks and not args.quick:
        from edge_cl.reporting import write_section

        write_section(f"fleet-refresh-k{k}", render_refresh(doc),
                      "python " + shlex.join(["benchmarks/fleet.py", *sys.argv[1:]]))
    print(json.dumps({"best": doc["best"], "rows": [{k: r[k] for k in ("method", "refresh", "mean_all", "mean_own")}
                                                    for r in rows], "wall_s": doc["wall_s"]}, indent=1))
    return 0


def superlink_transport(args: argparse.Namespace) -> int:
    """One setting on ``--seeds``, its rounds through Flower and in-process: accuracy of both, Flower's bytes on the
    wire and round latency."""
    settings = parse_settings(args.a, args.every, args.server_lr)
    if len(settings) != 1 or args.refresh_after_merge not in REFRESH_CHOICES:
        raise SystemExit("--transport superlink takes one --a, --every, --server-lr and --refresh-after-merge")
    (a, k, lr), = settings
    method = args.methods.split(",")[0].strip()
    t0 = time.perf_counter()
    per_seed = []
    for seed in (int(s) for s in args.seeds.split(",")):
        stream = make_stream(STREAM, scale=args.scale, seed=seed, num_tasks=args.devices * args.concepts_per_device)
        assert isinstance(stream, TaskStream)
        spec = default_model_spec(stream.input_dim, stream.num_classes)
        budget = device_budget(spec, args.budget_samples, method)
        own = assign_concepts(args.devices, args.concepts_per_device, seed)
        local = run_devices(stream, own, spec, budget, seed, k, a, lr, args.refresh_after_merge, method)
        flwr_run, flower = run_devices_superlink(stream, own, spec, budget, seed, k, a, lr, args.refresh_after_merge,
                                                 method)
        # Not bit for bit beyond 2 devices: Flower hands the replies over in the order they came, and float sums
        # of 3+ models depend on the order; the difference is float32 rounding.
        diff = max(float(np.max(np.abs(w[n] - v[n]))) for w, v in zip(flwr_run.weights, local.weights, strict=True)
                   for n in w)
        per_seed.append({"seed": seed, "superlink": _summary(flwr_run), "inprocess": _summary(local),
                         "max_weight_diff": diff, "flower": flower})
        print(f"seed {seed}: superlink {per_seed[-1]['superlink']['mean_all']:.2f}, in-process "
              f"{per_seed[-1]['inprocess']['mean_all']:.2f}, largest weight difference {diff:.3g}", file=sys.stderr,
              flush=True)
    doc = {"devices": args.devices, "concepts_per_device": args.concepts_per_device, "scale": args.scale,
           "budget_samples": args.budget_samples, "method": method, "setting": setting_name(a, k, lr),
           "refresh": args.refresh_after_merge, "payload_bytes": payload_bytes(args.budget_samples),
           "seeds": per_seed, "wall_s": time.perf_counter() - t0}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    if args.write_benchmarks and not args.quick:
        from edge_cl.reporting import write_section

        write_section("fleet-superlink", render_superlink(doc),
                      "python " + shlex.join(["benchmarks/fleet.py", *sys.argv[1:]]))
    print(json.dumps({"per_seed": [{k: r[k] for k in ("seed", "max_weight_diff")} | {
        "superlink": r["superlink"]["mean_all"], "inprocess": r["inprocess"]["mean_all"]} for r in per_seed],
        "wall_s": doc["wall_s"]}, indent=1))
    return 0


def render_superlink(doc: dict[str, Any]) -> str:
    """The BENCHMARKS.md section of --transport superlink."""
    from edge_cl.reporting import machine_line

    n, runs = doc["devices"], doc["seeds"]
    lines = [
        f"## Fleet through a real SuperLink: {n} devices, {doc['setting']} (issue #24)", "",
        (f"{machine_line()}. The fleet benchmark's setup ({n} devices, {doc['method']}, each its own "
         f"{doc['concepts_per_device']} rotations of MNIST, {doc['scale']:g} of MNIST's training set per rotation, "
         f"{doc['budget_samples']} float32 samples of buffer + fixed state each, refresh after merge: "
         f"{doc['refresh']}) with its rounds through Flower: a real `flower-superlink`, one `flower-supernode` per "
         "device and `flwr run` of edge_cl's Flower App on loopback, insecure; each device an OnlineLearner with the "
         "daemon's fleet channel, learning K steps and then serving the channel until the round's global model is "
         "merged (lock-step, like the in-process transport, which is run beside it on the same seed: the weights "
         "differ by float32 rounding at most, as Flower hands the replies to the average in the order they came). "
         "Each SuperNode "
         "dials the SuperLink through a byte-counting TCP proxy: wire bytes are Flower's HTTP traffic per device "
         "(polling and heartbeats included, registration excluded), divided by the rounds; payload bytes are the "
         "encoded models the channel handed over. Round latency: from the last device reaching the round to the "
         "last device having merged its global model."), "",
        ("| seed | fleet mean, through Flower | fleet mean, in-process | largest final weight difference | rounds "
         "| wall (s) |"),
        "|---|---|---|---|---|---|"]
    for r in runs:
        f = r["flower"]
        lines.append(f"| {r['seed']} | {r['superlink']['mean_all']:.2f} | {r['inprocess']['mean_all']:.2f} | "
                     f"{r['max_weight_diff']:.2g} | {f['rounds']} | {f['wall_s']:.0f} |")
    lat = [x for r in runs for x in r["flower"]["round_s"]]
    up = [x for r in runs for x in r["flower"]["wire_up_per_round"]]
    down = [x for r in runs for x in r["flower"]["wire_down_per_round"]]
    pup = [x for r in runs for x in r["flower"]["payload_up_per_round"]]
    pdown = [x for r in runs for x in r["flower"]["payload_down_per_round"]]
    model = doc["payload_bytes"]
    lines += [
        "", "| per device and round | up | down |", "|---|---|---|",
        f"| wire bytes (Flower's HTTP), mean over devices | {np.mean(up):,.0f} | {np.mean(down):,.0f} |",
        f"| wire bytes, largest device | {max(up):,.0f} | {max(down):,.0f} |",
        f"| payload bytes (encoded model through the channel) | {np.mean(pup):,.0f} | {np.mean(pdown):,.0f} |",
        (f"| in models ({model:,} bytes an encoded model), largest device | {max(up) / model:.3f} | "
        f"{max(down) / model:.3f} |"), "",
        (f"Round latency through Flower: median {1000 * statistics.median(lat):.0f} ms, p90 "
         f"{1000 * float(np.percentile(lat, 90)):.0f} ms, max {1000 * max(lat):.0f} ms over {len(lat)} rounds."), "",
        f"Wall time {doc['wall_s']:.0f} s (the in-process runs included)."]
    return "\n".join(lines)


def best_refresh(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per method, the refresh that beats ``none`` on every validation seed with the largest mean gain; ``none``
    when none does (refreshing logits costs a forward over the buffer at every merge, so it must pay for itself)."""
    best: dict[str, str] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = {r["refresh"]: r for r in rows if r["method"] == method}
        base = mine.get("none")
        wins = [(r["mean_all"] - base["mean_all"], name) for name, r in mine.items() if base is not None
                and name != "none" and all(v > b for v, b in zip(r["per_seed"], base["per_seed"], strict=True))]
        best[method] = max(wins)[1] if wins else "none"
    return best


def render_refresh(doc: dict[str, Any]) -> str:
    """The BENCHMARKS.md section of --compare-refresh."""
    from edge_cl.reporting import machine_line

    n = doc["devices"]
    lines = [
        f"## Fleet: what a merge should refresh, {n} devices, {doc['setting']} (issue #24)", "",
        (f"{machine_line()}. The fleet benchmark's setup (rotated-MNIST, {n} devices each seeing its own "
        f"{doc['concepts_per_device']} rotations, {doc['scale']:g} of MNIST's training set per rotation, "
        f"{doc['budget_samples']} float32 samples of buffer + fixed state each, rounds in-process, "
        f"**{doc['setting']}**), run on the validation seeds {', '.join(map(str, doc['val_seeds']))} only, with each "
        "merge followed by `edge_cl.fleet.refresh.refresh_after_merge`: `none`, `logits` (DER's stored logits "
        "recomputed by the merged model), `anchors` (importance anchors moved to the merged weights, omega kept), "
        "`both`. A value that changes nothing for a method (anchors without an importance method) is not run. "
        "No isolated or central baselines: the runs compare with each other. Round latency includes the refresh."), "",
        "| method | refresh | fleet mean (all) | per seed | vs none, per seed | median round (ms) |",
        "|---|---|---|---|---|---|"]
    base = {r["method"]: r for r in doc["rows"] if r["refresh"] == "none"}
    for r in doc["rows"]:
        lat, b = r["round_ms_median"], base.get(r["method"])
        diff = (" / ".join(f"{v - w:+.2f}" for v, w in zip(r["per_seed"], b["per_seed"], strict=True))
                if b is not None and r is not b else "")
        lines.append(f"| {r['method']} | {r['refresh']} | {r['mean_all']:.2f} | "
                     f"{' / '.join(f'{v:.2f}' for v in r['per_seed'])} | {diff} | "
                     + (f"{lat:.1f}" if lat is not None else "n/a") + " |")
    lines += ["", ("Only the fleet mean over all concepts is shown: with a = 1 and a round at the stream's end every "
                   "device ends on the same model, whose own-concept and transfer means are that mean."), "",
              "Chosen per method (a refresh only where it beats `none` on every validation seed, the largest mean "
              "gain among those; else `none`, which costs nothing): "
              + "; ".join(f"{m}: **{r}**" for m, r in doc["best"].items()) + ".", "",
              f"Wall time {doc['wall_s']:.0f} s."]
    return "\n".join(lines)


def render(doc: dict[str, Any]) -> str:
    """The BENCHMARKS.md section."""
    from edge_cl.reporting import machine_line

    f, i, c, v = doc["fleet"], doc["isolated"], doc["central"], doc["verdict"]
    n = doc["devices"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = [
        f"## Fleet learning: {n} devices, rotated-MNIST (issue #24)", "",
        f"{machine_line()}. {n} devices, each an OnlineLearner ({doc['method']}, the default method) with "
        f"{doc['budget_bytes']} bytes ({doc['budget_samples']} float32 samples of buffer + fixed state), each seeing "
        f"its own {doc['concepts_per_device']} rotations of MNIST one after the other "
        f"({doc['scale']:g} of MNIST's training set per rotation, batch {BATCH}); "
        f"{n * doc['concepts_per_device']} rotations in all, each seen by one device. "
        "Isolated: the same devices without rounds. Central: one learner with "
        f"{n} budgets fed every device's batches in the fleet's time order. Accuracy after the stream on each "
        "rotation's test set; seeds " + ", ".join(map(str, doc["seeds"])) + ", mean.", "",
        ("Rounds run in-process: every K steps the sample-weighted FedAvg of the devices' weights "
        "(`edge_cl.fleet.aggregate.sample_weighted_average`, which the ServerApp's strategy calls), the server's step "
        "from the previous global model towards it, `w_global = w_prev + lr*(average - w_prev)` "
        "(`edge_cl.fleet.aggregate.server_step`, the ServerApp's `server-lr`; lr=1 is plain FedAvg), then each device "
        "merges `w = a*w_global + (1-a)*w_local` (`edge_cl.fleet.aggregate.blend` + `edge_cl.fleet.merge.merge_global`, "
        "the daemon's merge). The transport is excluded: a real SuperLink costs every round two ClientApp processes "
        f"per device, so {n} devices and these rounds do not fit a 2-core machine's benchmark time, and Flower's "
        "simulation engine needs ray. Its cost is measured here as the encoded payload (`edge_cl.fleet.wire`) of "
        "every upload and download, and through a real SuperLink by `--transport superlink` for fewer devices and "
        "rounds (section fleet-superlink, which ends on the in-process run's weights up to float32 rounding); round latency "
        "below is aggregation, payload encoding and merges, in one process."), "",
        (f"Chosen on validation seeds {', '.join(map(str, doc['val_seeds']))} (most targets met, then fleet mean): "
        f"**{doc['chosen']}**."), "",
        ("| validation setting | fleet mean (all) | below central | own concepts | largest own drop vs isolated "
         "| targets met |"), "|---|---|---|---|---|---|"]
    for r in doc["validation"]:
        missed = [k for k, ok in r["verdict"].items() if not ok]
        lines.append(f"| {r['setting']} | {r['mean_all']:.1f} | {r['central_gap']:.1f} | {r['mean_own']:.1f} | "
                     f"{r['own_drop']:.1f} | {r['met']}/4"
                     + (f" (missed: {', '.join(missed)})" if missed else "") + " |")
    lines += ["", "| device | fleet own | isolated own | fleet transfer | isolated transfer | fleet all | isolated all |",
              "|---|---|---|---|---|---|---|"]
    for d, (fd, idd) in enumerate(zip(f["per_device"], i["per_device"], strict=True)):
        lines.append(f"| {d} | {fd['own']:.1f} | {idd['own']:.1f} | {fd['transfer']:.1f} | {idd['transfer']:.1f} | "
                     f"{fd['all']:.1f} | {idd['all']:.1f} |")
    lat = f["round_ms_median"]
    worst = max(((d, idd["own"] - fd["own"], fd["own"], idd["own"])
                 for d, (fd, idd) in enumerate(zip(f["per_device"], i["per_device"], strict=True))),
                key=lambda w: w[1])
    lines += [
        "", "| | fleet | isolated | central |", "|---|---|---|---|",
        f"| mean accuracy, all concepts | {f['mean_all']:.1f} | {i['mean_all']:.1f} | {c:.1f} |",
        f"| mean own-concept accuracy | {f['mean_own']:.1f} | {i['mean_own']:.1f} | |",
        f"| mean transfer accuracy | {f['mean_transfer']:.1f} | {i['mean_transfer']:.1f} | |", "",
        "Per seed, fleet / isolated / central: " + "; ".join(
            f"{s}: {a:.1f} / {b:.1f} / {cc:.1f}" for s, a, b, cc in zip(
                doc["seeds"], doc["fleet_mean_per_seed"], doc["isolated_mean_per_seed"], doc["central_per_seed"],
                strict=True)) + ".", "",
        f"Per round and device: {f['up_bytes_max']} bytes up, {f['down_bytes_max']} bytes down (one encoded model: "
        f"{f['payload_bytes']} bytes; {f['model_bytes']} bytes of float32 parameters, the rest is the .npz "
        f"container); {f['rounds']} rounds; median round "
        + (f"{lat:.1f} ms" if lat is not None else "n/a") + f" in-process for {n} devices.", "",
        "Targets (issue #24):", "",
        (f"- fleet mean >= isolated + {TARGET_GAIN:g} points: {mark(v['gain'])} "
        f"({f['mean_all']:.1f} vs {i['mean_all']:.1f} + {TARGET_GAIN:g})"),
        (f"- fleet mean within {TARGET_CENTRAL_GAP:g} points of central: {mark(v['central'])} "
        f"({f['mean_all']:.1f} vs {c:.1f}; a fleet above central counts as met)"),
        (f"- each device's own-concept accuracy >= isolated - {TARGET_OWN_DROP:g} (seed means per device): "
        f"{mark(v['own'])} (largest drop {worst[1]:.1f} points, device {worst[0]}: {worst[2]:.1f} vs {worst[3]:.1f})"),
        f"- a round costs at most one model up and one down: {mark(v['bytes'])}",
        "", (f"Central takes its steps of {BATCH} samples one after another ({n} for each step the fleet's devices "
         "take side by side, averaging every K): the same samples, more sequential updates."), "",
        f"Wall time {doc['wall_s']:.0f} s (validation included)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
