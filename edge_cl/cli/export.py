"""``edge-cl export STATE --out model.onnx``: a saved learner state to a verified ONNX snapshot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export")(export)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"6"`` -> ``(6,)``, ``"3,20"`` -> ``(3, 20)``; BadParameter naming the option otherwise."""
    try:
        shape = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise typer.BadParameter(f"{text!r}: give positive integers separated by commas, e.g. 6 or 3,20",
                                 param_hint="--input-shape")
    return shape


def _why_not_loaded(state: Path, exc: Exception) -> str:
    """One line telling the user what to pass when a saved learner cannot be loaded."""
    from edge_cl import user_code
    from edge_cl.state_file import safe_load

    why = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
    try:
        spec = safe_load(state).get("model_spec")
    except Exception:  # noqa: BLE001 - not a state file at all
        # torch's own text (advice to re-run torch.load with weights_only=False, i.e. to execute the file) is
        # wrong advice for a file that is simply not ours: say what it is not and what to pass instead.
        return (f"cannot load learner state {state}: it is not an edge_cl state file. Pass a file written by "
                "OnlineLearner.save or a daemon checkpoint (checkpoint.dir/ckpt-*.pt)")
    kind = str(spec.get("type", "")) if isinstance(spec, dict) else ""
    module = kind.partition(":")[0]
    if ":" in kind and not user_code.findable(module):
        # The daemon found the factory beside its config file; this process does not read that config.
        return (f"{state} holds a model built by factory {kind!r}, and module {module!r} is not importable here; "
                f"pass --import-dir DIR, DIR being the directory holding {module.split('.')[0]}.py (the daemon "
                "config's directory, if it was beside the config), or add that directory to PYTHONPATH")
    if spec is None:
        return (f"{state} was saved from a model without a spec, so it cannot be rebuilt here; load it in Python "
                "with OnlineLearner.load(path, model=<the same architecture>) and call edge_cl.export.export_onnx")
    return f"cannot load learner state {state}: {why}"


def export(
    state: Annotated[Path, typer.Argument(help="Learner state written by OnlineLearner.save / the daemon.",
                                          exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o",
                                      help="A .onnx file, or a snapshot directory (manifest.json + retention).")],
    exporter: Annotated[str, typer.Option(help="torchscript (fast) or dynamo.")] = "torchscript",
    samples: Annotated[int, typer.Option(min=1, help="Replay-buffer samples for the parity gate.")] = 64,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Max |onnxruntime - torch| of probabilities.")] = 1e-5,
    keep: Annotated[int, typer.Option(min=1, help="Snapshots kept when --out is a directory.")] = 5,
    input_shape: Annotated[str | None, typer.Option(
        "--input-shape", help="Per-sample shape recorded in the snapshot, e.g. 6 or 3,20 (the graph input stays "
                              "flat); default: the model's input_shape, else its input_dim.")] = None,
    import_dirs: Annotated[list[Path] | None, typer.Option(
        "--import-dir", file_okay=False,
        help="Directory to import the model's factory module from (model.type = 'module:function'), e.g. the "
             "daemon config's directory; repeatable.")] = None,
) -> None:
    """Export the model of a saved learner to ONNX, verified against torch with onnxruntime."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from edge_cl import user_code
    from edge_cl.export import Exporter, ExportError, check_parity, export_onnx, publish_snapshot
    from edge_cl.export.inputs import buffer_inputs
    from edge_cl.export.manifest import atomic_write, sha256_hex
    from edge_cl.learner import OnlineLearner

    console = Console(stderr=True)
    try:
        chosen = Exporter(exporter)
    except ValueError:
        raise typer.BadParameter(f"{exporter!r}; use one of {[e.value for e in Exporter]}",
                                 param_hint="--exporter") from None
    shape_given = parse_input_shape(input_shape) if input_shape is not None else None
    for directory in import_dirs or []:
        user_code.add_search_dir(directory)
    try:
        learner = OnlineLearner.load(state, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any file can be passed here; torch's errors on junk vary (KeyError ...)
        console.print(f"error: {_why_not_loaded(state, exc)}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    shape = shape_given if shape_given is not None else tuple(learner.input_shape)
    if math.prod(shape) != learner.input_dim:
        console.print(f"error: --input-shape {input_shape} holds {math.prod(shape)} features but the model takes "
                      f"{learner.input_dim} per sample; give a shape whose product is {learner.input_dim}",
                      style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    model = learner.export_model().eval()
    inputs = buffer_inputs(learner.buffer, samples)
    if inputs is not None:
        source = f"{inputs.shape[0]} replay-buffer samples"
    else:
        # An untrained state has no buffer: standard-normal inputs still check the graph.
        inputs = torch.randn(samples, learner.input_dim, generator=torch.Generator().manual_seed(0))
        source = f"{samples} random inputs (the replay buffer is empty)"
    accuracy = learner.prequential_accuracy
    table = Table(title=f"export {state.name}")
    table.add_column("field")
    table.add_column("value")
    try:
        if out.suffix == ".onnx":
            data = export_onnx(model, step=learner.step, prequential_accuracy=accuracy, input_shape=shape,
                               exporter=chosen)
            parity = check_parity(model, data, inputs, tolerance=tolerance)
            if not parity.ok:
                console.print(f"[red]parity gate failed, nothing written: {parity.reason}[/red]")
                raise typer.Exit(1)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out, data)
            path, digest, diff = out, sha256_hex(data), parity.max_abs_diff
        else:
            result = publish_snapshot(model, out, step=learner.step, sample_inputs=inputs, keep=keep,
                                      prequential_accuracy=accuracy, tolerance=tolerance, exporter=chosen,
                                      input_shape=shape)
            if not result.published or result.path is None:
                console.print(f"[red]snapshot not published: {result.reason}[/red]")
                raise typer.Exit(1)
            path, digest, diff = result.path, result.sha256 or "", result.max_abs_diff or 0.0
    except (ExportError, ValueError, OSError) as exc:
        console.print(f"error: nothing written: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for field, value in (("file", str(path)), ("step", str(learner.step)), ("sha256", digest),
                         ("input shape", str(shape)), ("parity on", source),
                         ("max |diff| probabilities", f"{diff:.3g}"), ("exporter", chosen.value)):
        table.add_row(field, value)
    console.print(table)
    typer.echo(str(path))
