"""`edge-cl bench`: continual-learning benchmarks (streams x methods x budget) and the device budget fit."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

# The default learner (der++) first among its comparisons: fine-tuning, replay, the importance methods.
DEFAULT_METHODS = "der++,sgd,er,ewc,mas,er+ewc,er+mas,joint,no-change"
DEFAULT_REPEATS = 5          # edge_cl.bench.fit_stats's defaults, repeated so --help needs no numpy import
DEFAULT_CONFIDENCE = 0.95
# Options the budget fit (--config) reads; any other option given with --config would be silently ignored.
FIT_OPTIONS = frozenset({"config", "latency_budget_ms", "rss_budget_mb", "sweep", "fit_steps", "repeats",
                         "confidence", "batch", "json_path", "plots", "write_benchmarks", "benchmarks_file", "threads"})
FIT_ONLY = frozenset({"latency_budget_ms", "rss_budget_mb", "sweep", "fit_steps", "repeats", "confidence"})

# Options shared by `bench` (old spelling: the budget fit with --config) and `bench fit`.
JsonPath = Annotated[Path | None, typer.Option("--json", help="Write the whole result document here.")]
Plots = Annotated[Path | None, typer.Option(help="Write PNG plots into this folder (budget fit: the configured "
                                                 "model's learn / predict latency against the budget, the sweep).")]
WriteBenchmarks = Annotated[str | None, typer.Option(help="Write the table into this BENCHMARKS.md section.")]
BenchmarksFile = Annotated[Path, typer.Option(help="File for --write-benchmarks.")]
LatencyBudget = Annotated[float | None, typer.Option(help="Budget fit: learn latency budget (p99, ms; default "
                                                          "bench.latency_budget_ms).")]
RssBudget = Annotated[float | None, typer.Option(help="Budget fit: peak RSS budget of the whole process (MiB; "
                                                      "default bench.rss_budget_mb).")]
Sweep = Annotated[bool, typer.Option(help="Budget fit: per replay batch, search the largest buffer that fits "
                                          "(monotone: a larger setting never reads cheaper).")]
FitSteps = Annotated[int, typer.Option(help="Budget fit: learn steps timed per repeat.")]
Repeats = Annotated[int, typer.Option(help="Budget fit: timed repeats per configuration (k); the verdict uses the "
                                           "upper end of a bootstrap interval of p99 over them.")]
Confidence = Annotated[float, typer.Option(help="Budget fit: confidence of that upper end (0.5 to <1).")]
Threads = Annotated[int, typer.Option(help="torch CPU threads (0: torch's default). 1 keeps small-model latency "
                                           "steady on a shared or small CPU.")]


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _command_line(ctx: typer.Context) -> str:
    """The command as the user gave it (options from the command line only), for BENCHMARKS.md."""
    parts = ["edge-cl", *ctx.command_path.split()[1:]]  # "edge-cl bench" or "edge-cl bench fit"
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if source is None or source.name != "COMMANDLINE":  # compared by name: typer may vendor click
            continue
        value = ctx.params[name]
        if getattr(param, "is_flag", False) and isinstance(value, bool):
            flags = list(param.opts) if value else list(getattr(param, "secondary_opts", []) or param.opts)
            parts.append(flags[0])
        elif isinstance(value, (list, tuple)):  # a repeatable option: once per value, as it was typed
            for item in value:
                parts += [param.opts[0], shlex.quote(str(item))]
        else:
            parts += [param.opts[0], shlex.quote(str(value))]
    return " ".join(parts)


def bench(
    ctx: typer.Context,
    stream: Annotated[str, typer.Option(help="rotated-mnist, permuted-mnist, split-mnist, gradual-rotation, elec2, "
                                             "occupancy, sea, agrawal, rbf, conflicting-regimes, recurring-mnist.")] = "rotated-mnist",
    methods: Annotated[str, typer.Option(help="Comma list of registered methods or '+' combinations (sgd, er, "
                                              "ewc, mas, er+ewc ...; see edge_cl.methods.available()) and "
                                              "baselines: joint, no-change, bare-sgd, bare-er.")] = DEFAULT_METHODS,
    method_param: Annotated[list[str] | None, typer.Option(
        help="A method setting KEY=VALUE (repeatable; VALUE read as JSON, else a string), given to the methods "
             "that declare it, e.g. --method-param importance_lambda=5.")] = None,
    plugins: Annotated[str, typer.Option(help="Comma list of modules to import first, so the methods they "
                                              "@register can be named in --methods.")] = "",
    budget_samples: Annotated[int | None, typer.Option(help="Budget as N float32 samples of buffer plus each "
                                                            "method's fixed state (default 500).")] = None,
    budget_bytes: Annotated[int | None, typer.Option(help="One byte budget for every method.")] = None,
    scale: Annotated[float, typer.Option(help="Fraction of each task's samples (1.0 = full protocol).")] = 1.0,
    protocol: Annotated[str, typer.Option(help="'edge' (batch 10, replay 10, lr 0.1) or 'der' (batch 128, "
                                               "replay 128, lr 0.2, as Buzzega et al. 2020).")] = "edge",
    batch: Annotated[int | None, typer.Option(help="New samples per step (overrides the protocol; with --config, "
                                                     "bench.batch).")] = None,
    replay_batch: Annotated[int | None, typer.Option(help="Replayed samples per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="SGD learning rate.")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd or adam (the bare loops are plain SGD only).")] = "sgd",
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.0,
    max_grad_norm: Annotated[float | None, typer.Option(help="Bound on a step's gradient L2 norm for the learner "
                                                             "methods (LearnerConfig.max_grad_norm; default: the "
                                                             "learner's).")] = None,
    init: Annotated[str | None, typer.Option(help="Initial weights: torch (default init) or xavier (mammoth's "
                                                  "MNISTMLP); default from the protocol.")] = None,
    standardize: Annotated[bool | None, typer.Option(
        help="--standardize / --no-standardize: always / never put the learner's online input standardiser (running "
             "mean / variance per feature, LearnerConfig.standardize) in front of every learner method's model; "
             "unset: the learner's default (vector inputs beyond [-1, 1] are standardised).")] = None,
    storage: Annotated[str | None, typer.Option(help="Buffer storage: float32, float16, uint8 (uint8 over [0, 1]); "
                                                     "unset: the learner's default.")] = None,
    class_balanced: Annotated[bool, typer.Option(help="Class-balanced reservoir (CBRS) for the learner methods.")]
    = False,
    predict: Annotated[str, typer.Option(help="model (the network's output) or ncm (nearest class mean over the "
                                              "buffer) for the learner methods.")] = "model",
    trigger: Annotated[str, typer.Option(help="Consolidation trigger for ewc/mas: plateau, adwin, page-hinkley, "
                                              "none.")] = "plateau",
    importance_lambda: Annotated[float | None, typer.Option(help="Penalty strength (learner default if unset).")]
    = None,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    repeat: Annotated[int, typer.Option(help="Run K seeds and report mean ± std.")] = 1,
    images: Annotated[str, typer.Option(help="Images behind the *-mnist streams: mnist or fashion-mnist.")]
    = "mnist",
    tasks: Annotated[int, typer.Option(help="Tasks of rotated/permuted MNIST.")] = 20,
    joint_epochs: Annotated[int, typer.Option(help="Epochs of the offline joint upper bound.")] = 1,
    bare: Annotated[bool, typer.Option(help="Also run the bare PyTorch loops bare-sgd / bare-er beside sgd / er "
                                            "(overhead reference; opt-in).")] = False,
    peers: Annotated[str, typer.Option(help="river peers for prequential streams: logreg,hat,arf.")] = "",
    peer_max_samples: Annotated[int | None, typer.Option(help="Subsample peers to the first N samples.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    data_dir: Annotated[Path | None, typer.Option(help="Data folder (default $EDGE_CL_DATA or ../shared/data).")]
    = None,
    json_path: JsonPath = None,
    plots: Plots = None,
    write_benchmarks: WriteBenchmarks = None,
    benchmarks_file: BenchmarksFile = Path("BENCHMARKS.md"),
    config: Annotated[Path | None, typer.Option(help="Budget fit (same as `bench fit --config`): the daemon's "
                                                     "config TOML (plus an optional bench table).")] = None,
    latency_budget_ms: LatencyBudget = None,
    rss_budget_mb: RssBudget = None,
    sweep: Sweep = False,
    fit_steps: FitSteps = 300,
    repeats: Repeats = DEFAULT_REPEATS,
    confidence: Confidence = DEFAULT_CONFIDENCE,
    threads: Threads = 1,
) -> None:
    """Benchmark methods on a stream under one byte budget (markdown to stdout, JSON, plots); `bench fit` (or
    `bench --config`) answers whether a device configuration fits its latency and memory budgets."""
    if ctx.invoked_subcommand is not None:  # `bench fit ...`: the subcommand takes every option
        if given := _given(ctx):
            _fail(f"{', '.join(_option(ctx, n) for n in given)} before `{ctx.invoked_subcommand}`: put the options "
                  f"after it (edge-cl bench {ctx.invoked_subcommand} --help lists them)")
        return
    command = _command_line(ctx)
    _check_mode(ctx, config is not None)
    _check_plots(plots)
    _set_threads(threads)
    if config is not None:
        settings = {"latency_budget_ms": latency_budget_ms, "rss_budget_mb": rss_budget_mb, "batch": batch,
                    "repeats": repeats, "confidence": confidence}
        _budget_fit(config, settings,
                    sweep, fit_steps, json_path, write_benchmarks, benchmarks_file, command, plots)
        return
    from edge_cl.bench.methods import parse_methods
    from edge_cl.bench.runner import BenchConfig
    from edge_cl.methods import import_plugins

    try:
        plugin_list = [p.strip() for p in plugins.split(",") if p.strip()]
        import_plugins(plugin_list)
        cfg = BenchConfig(
            stream=stream, methods=parse_methods(methods), method_params=_method_params(method_param or []),
            plugins=plugin_list, scale=scale, seed=seed, repeat=repeat, protocol=protocol,
            batch=batch, replay_batch=replay_batch, lr=lr, init=init,
            optimizer=optimizer, momentum=momentum, max_grad_norm=max_grad_norm,
            budget_samples=None if budget_bytes is not None and budget_samples is None else (budget_samples or 500),
            budget_bytes=budget_bytes, storage=storage, predict=predict, class_balanced=class_balanced, trigger=None if trigger == "none" else trigger,
            importance_lambda=importance_lambda, device=device, joint_epochs=joint_epochs, bare=bare,
            peers=[p.strip() for p in peers.split(",") if p.strip()], peer_max_samples=peer_max_samples,
            data_dir=str(data_dir) if data_dir else None, num_tasks=tasks, images=images,
            standardize=standardize).resolved()
    except ValueError as exc:
        _fail(str(exc))
    doc = _run_with_progress(cfg)
    _emit(doc, json_path, plots, write_benchmarks, benchmarks_file, command)


def fit(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option(help="The daemon's config TOML (plus an optional bench table).")],
    latency_budget_ms: LatencyBudget = None,
    rss_budget_mb: RssBudget = None,
    batch: Annotated[int | None, typer.Option(help="New samples per step (default bench.batch, else "
                                                   "learner.max_batch).")] = None,
    sweep: Sweep = False,
    fit_steps: FitSteps = 300,
    repeats: Repeats = DEFAULT_REPEATS,
    confidence: Confidence = DEFAULT_CONFIDENCE,
    json_path: JsonPath = None,
    plots: Plots = None,
    write_benchmarks: WriteBenchmarks = None,
    benchmarks_file: BenchmarksFile = Path("BENCHMARKS.md"),
    threads: Threads = 1,
) -> None:
    """Does a device configuration fit its budgets? FITS (exit 0) or DOES NOT FIT (exit 1, with the reasons):
    learn p99's bootstrap upper bound over k repeats, predict latency beside it, state bytes and peak RSS."""
    command = _command_line(ctx)
    _check_plots(plots)
    _set_threads(threads)
    settings = {"latency_budget_ms": latency_budget_ms, "rss_budget_mb": rss_budget_mb, "batch": batch,
                "repeats": repeats, "confidence": confidence}
    _budget_fit(config, settings, sweep, fit_steps, json_path, write_benchmarks, benchmarks_file, command, plots)


def _check_plots(plots: Path | None) -> None:
    if plots is not None and importlib.util.find_spec("matplotlib") is None:  # before the run, not after it
        _fail(f"--plots {plots} needs matplotlib: pip install -e '.[bench]' (or drop --plots)")


def _set_threads(threads: int) -> None:
    if threads < 0:
        _fail(f"--threads {threads} must be >= 0 (0 keeps torch's default)")
    if threads:
        import torch

        # The CLI owns the process: with more intra-op threads than free cores, OpenMP waits turn a 1 ms
        # update into 100 ms stalls (measured on a shared 2-core host), so benchmarks pin the count.
        torch.set_num_threads(threads)


def _given(ctx: typer.Context) -> list[str]:
    """The parameters typed on the command line (not defaults)."""
    return [p.name for p in ctx.command.params if p.name and (src := ctx.get_parameter_source(p.name)) is not None
            and src.name == "COMMANDLINE"]


def _option(ctx: typer.Context, name: str) -> str:
    return next(p.opts[0] for p in ctx.command.params if p.name == name)


def _check_mode(ctx: typer.Context, fit: bool) -> None:
    """Refuse options the chosen mode would ignore: the budget fit (--config) and the stream benchmark differ."""
    given = _given(ctx)
    stray = [n for n in given if (n not in FIT_OPTIONS if fit else n in FIT_ONLY)]
    if not stray:
        return
    names = ", ".join(_option(ctx, n) for n in stray)
    if fit:
        _fail(f"{names} {'does' if len(stray) == 1 else 'do'} not apply to the budget fit (--config); it reads only "
              f"{', '.join(sorted(_option(ctx, n) for n in FIT_OPTIONS))}. Drop {names}, or drop --config to "
              "benchmark a stream")
    _fail(f"{names} {'applies' if len(stray) == 1 else 'apply'} only to the budget fit: add --config device.toml, or drop {names}")


def _method_params(items: list[str]) -> dict[str, Any]:
    """``["importance_lambda=5", "logits_dtype=float32"]`` -> ``{"importance_lambda": 5, ...}``."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--method-param {item!r} must be KEY=VALUE, e.g. importance_lambda=5")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _run_with_progress(cfg: Any) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from edge_cl.bench.runner import run_bench

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=True, console=Console(stderr=True)) as prog:
        task = prog.add_task(f"bench {cfg.stream}", total=None)
        try:
            return run_bench(cfg, progress=lambda n: prog.advance(task, n),
                             on_total=lambda n: prog.update(task, total=n))
        except (ValueError, FileNotFoundError) as exc:
            prog.stop()
            _fail(str(exc))
    raise AssertionError("unreachable")  # _fail raises


def _emit(doc: dict[str, Any], json_path: Path | None, plots: Path | None, section: str | None,
          benchmarks_file: Path, command: str) -> None:
    from edge_cl.bench.report import markdown_table

    table = markdown_table(doc)
    typer.echo(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=1))
        typer.echo(f"\nwrote {json_path}", err=True)
    if plots is not None:
        from edge_cl.bench.plots import write_plots

        try:
            files = write_plots(doc, plots)
        except ValueError as exc:
            _fail(str(exc))
        typer.echo(f"wrote {len(files)} plot(s) into {plots}", err=True)
    if section is not None:
        from edge_cl.reporting import machine_line, write_section

        body = f"### {section}\n\nMeasured on: {machine_line(str(doc.get('device', 'cpu')))}\n\n{table}"
        try:
            write_section(section, body, command, benchmarks_file)
        except ValueError as exc:
            _fail(str(exc))
        typer.echo(f"wrote section {section!r} of {benchmarks_file}", err=True)


def _budget_fit(config: Path, settings: dict[str, Any], sweep: bool, steps: int, json_path: Path | None,
                section: str | None, benchmarks_file: Path, command: str, plots: Path | None = None) -> None:
    from edge_cl.bench.budget_fit import load_fit_config, run_fit
    from edge_cl.bench.fit_report import fit_report_markdown
    from edge_cl.bench.fit_sweep import run_sweep

    try:
        fit_cfg = load_fit_config(config, **settings)
        doc = run_sweep(fit_cfg, steps=steps) if sweep else run_fit(fit_cfg, steps=steps)
    except ValueError as exc:
        _fail(str(exc))
    text = fit_report_markdown(doc)
    typer.echo(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=1))
    if plots is not None:  # also for DOES NOT FIT: the plot shows by how much
        from edge_cl.bench.fit_plots import write_fit_plots

        try:
            files = write_fit_plots(doc, plots)
        except ValueError as exc:
            _fail(str(exc))
        typer.echo(f"wrote {len(files)} plot(s) into {plots}"
                   + ("" if files else " (nothing was timed: the configuration does not fit its byte budget)"), err=True)
    if section is not None:
        from edge_cl.reporting import machine_line, write_section

        try:
            write_section(section, f"### {section}\n\nMeasured on: {machine_line()}\n\n{text}", command,
                          benchmarks_file)
        except ValueError as exc:
            _fail(str(exc))
    if not doc.get("fits", False):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``bench`` (the stream benchmark; with --config, the budget fit) and ``bench fit`` to the app."""
    group = typer.Typer(context_settings={"help_option_names": ["-h", "--help"]})
    group.callback(invoke_without_command=True)(bench)
    group.command(name="fit")(fit)
    app.add_typer(group, name="bench")
