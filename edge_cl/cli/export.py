"""``edge-cl export STATE --out model.onnx``: a saved learner state to a verified ONNX snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export")(export)


def export(
    state: Annotated[Path, typer.Argument(help="Learner state written by OnlineLearner.save / the daemon.",
                                          exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o",
                                      help="A .onnx file, or a snapshot directory (manifest.json + retention).")],
    exporter: Annotated[str, typer.Option(help="torchscript (fast) or dynamo.")] = "torchscript",
    samples: Annotated[int, typer.Option(min=1, help="Replay-buffer samples for the parity gate.")] = 64,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Max |onnxruntime - torch| of probabilities.")] = 1e-5,
    keep: Annotated[int, typer.Option(min=1, help="Snapshots kept when --out is a directory.")] = 5,
) -> None:
    """Export the model of a saved learner to ONNX, verified against torch with onnxruntime."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from edge_cl.export import Exporter, check_parity, export_onnx, publish_snapshot
    from edge_cl.export.manifest import atomic_write, sha256_hex
    from edge_cl.learner import OnlineLearner

    console = Console(stderr=True)
    try:
        chosen = Exporter(exporter)
    except ValueError:
        raise typer.BadParameter(f"{exporter!r}; use one of {[e.value for e in Exporter]}",
                                 param_hint="--exporter") from None
    try:
        learner = OnlineLearner.load(state, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any file can be passed here; torch's errors on junk vary (KeyError ...)
        why = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
        console.print(f"cannot load learner state {state}: {why}. Pass a file written by OnlineLearner.save or a "
                      "daemon checkpoint (checkpoint.dir/ckpt-*.pt)", style="red", markup=False)
        raise typer.Exit(2) from None
    model = learner.inference_model().eval()
    if len(learner.buffer) > 0:
        inputs = learner.buffer.sample(min(samples, len(learner.buffer)))[0].cpu()
        source = f"{inputs.shape[0]} replay-buffer samples"
    else:
        # An untrained state has no buffer: standard-normal inputs still check the graph.
        inputs = torch.randn(samples, learner.input_dim, generator=torch.Generator().manual_seed(0))
        source = f"{samples} random inputs (the replay buffer is empty)"
    accuracy = learner.prequential_accuracy
    table = Table(title=f"export {state.name}")
    table.add_column("field")
    table.add_column("value")
    if out.suffix == ".onnx":
        data = export_onnx(model, step=learner.step, prequential_accuracy=accuracy, exporter=chosen)
        parity = check_parity(model, data, inputs, tolerance=tolerance)
        if not parity.ok:
            console.print(f"[red]parity gate failed, nothing written: {parity.reason}[/red]")
            raise typer.Exit(1)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, data)
        path, digest, diff = out, sha256_hex(data), parity.max_abs_diff
    else:
        result = publish_snapshot(model, out, step=learner.step, sample_inputs=inputs, keep=keep,
                                  prequential_accuracy=accuracy, tolerance=tolerance, exporter=chosen)
        if not result.published or result.path is None:
            console.print(f"[red]snapshot not published: {result.reason}[/red]")
            raise typer.Exit(1)
        path, digest, diff = result.path, result.sha256 or "", result.max_abs_diff or 0.0
    for field, value in (("file", str(path)), ("step", str(learner.step)), ("sha256", digest),
                         ("input shape", str(tuple(learner.input_shape))), ("parity on", source),
                         ("max |diff| probabilities", f"{diff:.3g}"), ("exporter", chosen.value)):
        table.add_row(field, value)
    console.print(table)
    typer.echo(str(path))
