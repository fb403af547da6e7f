"""The ``aerocolor`` command line: each sub-command is a thin call into the library."""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from .commands.app import MaxPixels, app
from .errors import AerocolorError


@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/).")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="Folder of colour training images (repeatable).")] = None,
    data_a: Annotated[list[str] | None, typer.Option("--data-a", help="Folder of gray old photos, domain A (unpaired methods).")] = None,
    val: Annotated[list[str] | None, typer.Option("--val", help="Folder of colour validation images (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder for checkpoints and logs.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Total training steps (overrides the epoch budget).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config value: section.key=value (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last.pt if present.")] = True,
    until_step: Annotated[int | None, typer.Option("--until-step", help="Stop at this step (the schedule still spans the full budget).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    max_pixels: MaxPixels = None,
) -> None:
    """Train a colorization model. Launch with torchrun for multi-process training."""
    from .config import load_config
    from .train import train as run_training

    sets = list(overrides or [])
    for key, value in (("data.train", data), ("data.train_a", data_a), ("data.val", val)):
        if value:
            sets.append(f"{key}=[{', '.join(repr(str(v)) for v in value)}]")
    for key, value in (("train.out_dir", out), ("optim.max_steps", steps), ("train.device", device), ("train.seed", seed)):
        if value is not None:
            sets.append(f"{key}={value}")
    cfg = load_config(config, sets)
    run = run_training(cfg, resume=resume, until_step=until_step, progress=not quiet)
    saved = [p.name for p in (run / "last.pt", run / "best.pt") if p.is_file()]
    typer.echo(f"checkpoints in {run}: {', '.join(saved) or 'none yet (stopped before the first save)'}")


@app.command()
def colorize(
    inputs: Annotated[list[str], typer.Argument(help="[CHECKPOINT] then images, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("colorized"),
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Checkpoint (default: the bundled model).")] = None,
    compare: Annotated[bool, typer.Option(help="Also write NAME_compare.png: gray | colour (| original) side by side; for rasters a preview of at most 2048 px a side.")] = False,
    tile: Annotated[int, typer.Option(help="Largest tile side: an image of at most tile x tile pixels is one tile; larger ones are cut into the fewest equal tiles of at most this side.")] = 1024,
    overlap: Annotated[int, typer.Option(help="Least overlap between tiles, blended smoothly.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    skip_existing: Annotated[bool, typer.Option(help="Skip images whose output exists.")] = False,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 1,
    backend: Annotated[str, typer.Option(help="torch, onnx (onnxruntime), int8 (the bundled model's int8 copy, onnxruntime) or auto: an .onnx file runs with onnx; a checkpoint on the CPU with torch unless onnx (then int8) was measured at least 10% faster for it on this machine (measured once, remembered in ~/.cache/aerocolor/backends.json).")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bfloat16 convolutions on a GPU and on a CPU with native bfloat16, e.g. AVX512-BF16; float32 elsewhere), float32 or bfloat16; a precision other than auto runs the torch backend. Outputs stay float32.")] = "auto",
    cog: Annotated[bool, typer.Option(help="Rasters: write a Cloud Optimized GeoTIFF with overviews.")] = False,
    band: Annotated[int | None, typer.Option(help="Rasters: band to colorize (default: luminance of bands 1-3, or band 1).")] = None,
    stretch: Annotated[str, typer.Option(help="Rasters: auto (percentile stretch beyond 8 bits), percentile or none.")] = "auto",
    match_resolution: Annotated[bool, typer.Option(help="Rasters: resample to the model's ground resolution and back.")] = False,
    samples: Annotated[int, typer.Option(help="Multimodal (BicycleGAN) models: K colorizations each, NAME_color_1..K.png.")] = 0,
    style: Annotated[Path | None, typer.Option(help="Multimodal models: take the colours of this reference colour image.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --samples latent codes.")] = 0,
    engine: Annotated[str, typer.Option(help="local (this process) or ray (Ray workers, each loading the model once). ray, --archive or --consistent run an archive job: OUT/colorize-manifest.jsonl (reruns skip verified outputs), OUT/mosaic.vrt and OUT/stac/.")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="--engine ray: join this Ray cluster (e.g. auto, or ray://HEAD:10001); default: start a local Ray and stop it afterwards.")] = None,
    workers: Annotated[int | None, typer.Option(help="--engine ray: worker processes (default: one per CPU of the cluster).")] = None,
    worker_gpus: Annotated[float, typer.Option("--worker-gpus", help="--engine ray: GPUs per worker (1, or 0.5 for two workers per GPU); use with --device cuda.")] = 0,
    archive: Annotated[bool, typer.Option(help="Run as an archive job on the local engine too (manifest, resume, mosaic.vrt, STAC items).")] = False,
    consistent: Annotated[bool, typer.Option(help="One colour look per group of inputs: whole-input statistics are gathered over all inputs of a group first, then shared by every file.")] = False,
    group_by: Annotated[str, typer.Option("--group-by", help="--consistent groups: folder (each input's folder), all, or a regular expression on the path whose first group names the group (e.g. 'flight_(\\d+)').")] = "folder",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    max_pixels: MaxPixels = None,
    restore: Annotated[bool, typer.Option("--restore", help="Repair dust, scratches, blotches and holes first (see aerocolor restore); the damage masks go to OUT/NAME_mask.tif.")] = False,
    mask_borders: Annotated[bool, typer.Option("--mask-borders", help="With --restore: leave the frame border, fiducials and data strip as nodata.")] = False,
    reference: Annotated[Path | None, typer.Option(help="A colour reference: a georeferenced raster of the same place (reprojected onto each georeferenced input; any CRS and resolution; no data where it does not reach), or any colour image, whose palette is used. Picks the bundled reference model unless -m is given.")] = None,
    reference_wmts: Annotated[str | None, typer.Option("--reference-wmts", help="A colour reference from a map service: WMTS URL (with --reference-layer) or XYZ template with {z}/{x}/{y}; the tiles over each input's footprint are fetched (cached in OUT/.reference_tiles, resumable).")] = None,
    reference_layer: Annotated[str | None, typer.Option("--reference-layer", help="WMTS layer of --reference-wmts.")] = None,
    reference_zoom: Annotated[str | None, typer.Option("--reference-zoom", help="Zoom level of --reference-wmts (default: the one nearest half the model's reference cell size).")] = None,
    reference_strength: Annotated[float, typer.Option("--reference-strength", help="0..1: how strongly the colours follow the reference (1: fully, 0: as without one).")] = 1.0,
    chroma: Annotated[float | None, typer.Option(help="Colour saturation: a multiplier on the colours' a*, b* (1: as the network predicts; default: the model's calibrated value, see `aerocolor info`).")] = None,
) -> None:
    """Colorize gray aerial photos (PNG, JPEG, TIFF; any size). Colour inputs are converted to gray first.

    Rasters (GeoTIFF, COG, JPEG2000, VRT) are streamed tile by tile into georeferenced .tif outputs.
    Whole archives: --engine ray (see the README's archive section)."""
    from tqdm import tqdm

    from .checkpoint import CKPT_SUFFIXES
    from .colorize import colorize_files, expand_inputs, latent_variants
    from .imageio import output_folder
    from .infer import load_colorizer, reference_model_path
    from .infer.colorizer import check_tiling
    from .infer.loading import check_chroma, check_precision
    from .infer.raster import RasterOptions

    items = list(inputs)
    if model is None and items and Path(items[0]).suffix.lower() in CKPT_SUFFIXES:
        model = Path(items.pop(0))
    if not items:
        raise AerocolorError("no images given: aerocolor colorize [CKPT] IMAGE... -o OUT/")
    check_tiling(tile, overlap, batch_size)
    if chroma is not None:
        check_chroma(chroma)
    check_precision(precision, backend, model)
    if samples < 0:
        raise AerocolorError(f"--samples {samples}: give 0 (one colorization) or a positive count")
    spec = reference_spec(reference, reference_wmts, reference_layer, reference_strength, reference_zoom, out)
    if spec is not None and model is None and reference_model_path().is_file():
        model = reference_model_path()
    archive_job = engine != "local" or archive or consistent
    if archive_job and consistent and (samples or style is not None):
        raise AerocolorError("--consistent shares one set of statistics per group; it does not combine "
                             "with --samples or --style (colorize the variants without --consistent)")
    if archive_job and spec is not None:
        raise AerocolorError("--reference is not available in archive jobs (--engine ray, --archive, "
                             "--consistent) yet: colorize with a reference on the local engine")
    files = expand_inputs(items)
    output_folder(out)
    raster = RasterOptions(band=band, stretch=stretch, cog=cog, match_resolution=match_resolution,
                           tile=tile, overlap=overlap, batch_size=batch_size)
    with ExitStack() as stack:
        if restore or mask_borders:
            from .restore.restore import restored_inputs

            files = stack.enter_context(restored_inputs(files, out, mask_borders, device))
        if archive_job:
            from .archive import ArchiveOptions
            from .archive.worker import WorkSpec

            run_archive_job(files, WorkSpec(
                out_dir=out, model=model, device=device, backend=backend, raster=raster, compare=compare,
                samples=samples, style=style, seed=seed, max_pixels=max_pixels, chroma=chroma,
                precision=precision), ArchiveOptions(
                engine=engine, ray_address=ray_address, workers=workers, worker_gpus=worker_gpus,
                consistent=consistent, group_by=group_by, progress=not quiet))
            return
        colorizer = load_colorizer(model, device, backend, chroma, precision)
        colorizer.check_reference(spec)
        failed: list[str] = []

        def report(path: Path, e: AerocolorError) -> None:
            failed.append(str(path))
            typer.echo(f"error: {e}", err=True)

        written = colorize_files(colorizer, files, out, compare=compare, tile=tile, overlap=overlap,
                                 skip_existing=skip_existing, warn=lambda m: tqdm.write(m, file=sys.stderr),
                                 raster=raster, latents=latent_variants(colorizer, samples, style, seed),
                                 progress=not quiet, on_error=report if len(files) > 1 else None,
                                 reference=spec)
    for p in written:
        typer.echo(str(p))
    if failed:
        typer.echo(f"{len(failed)} of {len(files)} inputs failed (the others are done): {', '.join(failed)}",
                   err=True)
        raise typer.Exit(1)
    if backend == "auto":
        typer.echo(f"backend: {colorizer.backend}", err=True)


def reference_spec(reference: Path | None, wmts: str | None, layer: str | None, strength: float,
                   zoom: str | None, out: Path):
    """``colorize``'s colour reference: a file or a map service (not both), or None."""
    if reference is None and wmts is None:
        return None
    if reference is not None and wmts is not None:
        raise AerocolorError("give one reference: --reference FILE or --reference-wmts URL, not both")
    from .infer.reference import ReferenceSpec

    return ReferenceSpec(reference, wmts, layer, strength, zoom, out / ".reference_tiles",
                         warn=lambda m: typer.echo(f"warning: {m}", err=True))


def run_archive_job(files: list[Path], work_spec, options) -> None:
    """``colorize`` as an archive job (manifest, resume, mosaic, STAC); exit 1 if any input failed."""
    from .archive import run_archive

    summary = run_archive(files, work_spec, options, warn=lambda m: typer.echo(m, err=True))
    for line in summary.lines():
        typer.echo(line, err=line.startswith("failed"))
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def info(checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file.")]) -> None:
    """Print a checkpoint's method, config and metrics."""
    import yaml

    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    typer.echo(yaml.safe_dump({"step": ckpt.get("step"), "best": ckpt.get("best"),
                               "aerocolor_version": ckpt.get("aerocolor_version"),
                               "config": ckpt["config"]}, sort_keys=False))


@app.command("plot-losses")
def plot_losses(
    run: Annotated[Path, typer.Argument(help="Run folder (holding losses.csv) or the CSV itself.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write (default RUN/losses.png).")] = None,
    keys: Annotated[list[str] | None, typer.Option("--key", help="Loss columns to plot (default: all).")] = None,
) -> None:
    """Plot the losses over training (e.g. the generator's adversarial loss, G_GAN)."""
    from .plots import plot_loss_curves

    typer.echo(str(plot_loss_curves(run, out, keys)))


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint.")],
    slim: Annotated[Path | None, typer.Option("--slim", help="Write an inference-only checkpoint here.")] = None,
    half: Annotated[bool, typer.Option(help="Store the slim checkpoint's weights as float16.")] = False,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="Write the generator as ONNX here (dynamic height/width).")] = None,
    tile: Annotated[int, typer.Option(help="Tile size recorded in the ONNX metadata.")] = 1024,
    overlap: Annotated[int, typer.Option(help="Tile overlap recorded in the ONNX metadata.")] = 64,
    int8: Annotated[Path | None, typer.Option("--int8", help="With --onnx: quantise the residual blocks' convolutions to int8, calibrated on the photos in this folder (gray or colour; 24 are enough).")] = None,
) -> None:
    """Export a checkpoint for inference: a slim checkpoint and/or an ONNX model (float32, or int8 with --int8)."""
    from .checkpoint import checkpoint_config, load_checkpoint, save_checkpoint, slim_checkpoint
    from .imageio import output_folder
    from .methods import get_method

    if slim is None and onnx is None:
        raise AerocolorError("nothing to export: give --slim OUT.pt and/or --onnx OUT.onnx")
    if int8 is not None and onnx is None:
        raise AerocolorError("--int8 quantises the ONNX model: give --onnx OUT.onnx too")
    for option, target in (("--slim", slim), ("--onnx", onnx)):
        if target is not None:
            output_folder(target.parent, f"{option} {target}: its folder")
    if slim is not None:
        ckpt = load_checkpoint(checkpoint)
        method = get_method(checkpoint_config(ckpt).model.method)
        save_checkpoint(slim, slim_checkpoint(ckpt, method.inference_nets, half))
        typer.echo(f"{slim} ({slim.stat().st_size / 1e6:.1f} MB)")
    if onnx is not None:
        from .infer.onnx import export_onnx
        from .infer.torch_backend import load_method

        if int8 is None:
            export_onnx(*load_method(checkpoint), onnx, tile=tile, overlap=overlap)
        else:
            from .imageio import atomic_write
            from .infer.int8 import calibration_photos, file_digest, quantise_int8

            tiles = calibration_photos(int8)
            data = quantise_int8(export_onnx(*load_method(checkpoint), tile=tile, overlap=overlap), tiles,
                                 source_digest=file_digest(checkpoint))
            atomic_write(onnx, lambda tmp: Path(tmp).write_bytes(data))
        typer.echo(f"{onnx} ({onnx.stat().st_size / 1e6:.1f} MB)")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
) -> None:
    """Colorize the bundled sample aerial photo with the bundled model."""
    from .demo import run_demo

    for line in run_demo(out):
        typer.echo(line)


def user_error_line(e: AerocolorError | OSError) -> str:
    """One line for an error the user can fix: the message, or for a file-system error the path,
    what is wrong and the fix."""
    if isinstance(e, AerocolorError):
        return str(e)
    fixes = {PermissionError: "give a folder you can write to, or fix its permissions",
             FileExistsError: "a file is in the way of a folder: give another path",
             NotADirectoryError: "a file is in the way of a folder: give another path",
             IsADirectoryError: "give a file, not a folder",
             FileNotFoundError: "check the path"}
    fix = next((f for kind, f in fixes.items() if isinstance(e, kind)), "check the path and the disk")
    return f"{e.filename}: {e.strerror or e}; {fix}"


# Sub-commands of other areas live in commands/ and register on `app` when imported, one line each.
from .commands import data as _data_commands  # noqa: E402,F401
from .commands import evaluate as _evaluate_commands  # noqa: E402,F401
from .commands import restore as _restore_commands  # noqa: E402,F401
from .commands import web as _web_commands  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Entry point; user errors print one line (no traceback) and exit with status 2. ``--debug``
    (anywhere) or AEROCOLOR_DEBUG=1 shows the traceback instead, for bug reports."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("AEROCOLOR_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args)
    except (AerocolorError, OSError) as e:
        if debug or (isinstance(e, OSError) and not e.filename):
            raise  # an OSError without a file is no input of the user's: a bug to report
        typer.echo(f"error: {user_error_line(e)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; completed work is kept (rerun to resume)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
