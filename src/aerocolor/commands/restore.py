"""``aerocolor restore``: repair dust, hairs, scratches, blotches and missing areas of scans."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import AerocolorError
from .app import app


def restore_options(repair: str, strength: float, mask_borders: bool, fill: str, tile: int, device: str):
    from ..restore.restore import RestoreOptions, check_options, parse_repair

    opts = RestoreOptions(repair=parse_repair(repair), strength=strength, mask_borders=mask_borders,
                          fill=fill, tile=tile, device=device)
    check_options(opts)
    return opts


@app.command()
def restore(
    inputs: Annotated[list[str], typer.Argument(help="Scans: images, folders or glob patterns (GeoTIFF, PNG, JPEG ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: NAME.tif (NAME.png for plain images) and NAME_mask.tif.")] = Path("restored"),
    repair: Annotated[str, typer.Option(help="What to repair: dust, hairs, scratches, blotches, holes (comma-separated) or all.")] = "all",
    strength: Annotated[float, typer.Option(help="0 repairs only the surest damage, 1 anything that may be damage; the default 0.5 (thresholds per damage type, calibrated) leaves clean photos nearly unchanged.")] = 0.5,
    mask_borders: Annotated[bool, typer.Option("--mask-borders", help="Set the frame border, fiducial marks, data strip and flat no-data edges to nodata.")] = False,
    fill: Annotated[str, typer.Option(help="auto (for each damage type, the fill that measured better on it, as recorded in the restoration model), classical (Telea) or network.")] = "auto",
    restore_model: Annotated[Path | None, typer.Option("--restore-model", help="Restoration model file (default: the bundled one).")] = None,
    tile: Annotated[int, typer.Option(help="Tile size of the damage detector.")] = 512,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Restore damaged scans before colorizing; every filled pixel is recorded in NAME_mask.tif
    (codes: 0 clean, 1 dust, 2 hairs, 3 scratches, 4 blotches, 5 holes, 6 frame border)."""
    from ..colorize import expand_inputs
    from ..imageio import output_folder
    from ..restore.restore import Restorer, restore_files

    opts = restore_options(repair, strength, mask_borders, fill, tile, device)
    files = expand_inputs(inputs)
    if not files:
        raise AerocolorError("no images given: aerocolor restore SCAN... -o OUT/")
    output_folder(out)
    restorer = Restorer.load(restore_model, opts)
    failed: list[str] = []

    def report(path: Path, e: AerocolorError) -> None:
        failed.append(str(path))
        typer.echo(f"error: {e}", err=True)

    for p in restore_files(restorer, files, out, progress=not quiet,
                           on_error=report if len(files) > 1 else None):
        typer.echo(str(p))
    if failed:
        typer.echo(f"{len(failed)} of {len(files)} inputs failed (the others are done): {', '.join(failed)}",
                   err=True)
        raise typer.Exit(1)
