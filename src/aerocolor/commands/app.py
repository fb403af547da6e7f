"""The ``aerocolor`` typer app, its root options and the options several commands share. The
commands register on ``app``: the core ones in ``cli.py``, the others in this package's modules."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__

app = typer.Typer(
    name="aerocolor",
    help="Colorize historical grayscale aerial photographs with GANs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _set_max_pixels(ctx: typer.Context, value: int | None) -> int | None:
    if value is not None:
        from ..imageio import kept_pixel_limit, set_pixel_limit

        ctx.with_resource(kept_pixel_limit())  # the previous limit comes back when the command ends
        set_pixel_limit(value)
    return value


# the same limit as AEROCOLOR_MAX_PIXELS, for one command
MaxPixels = Annotated[int | None, typer.Option(
    "--max-pixels", callback=_set_max_pixels,
    help="Refuse images whose header claims more pixels than this, a guard against decompression bombs "
         "(default: AEROCOLOR_MAX_PIXELS, else about 89 million); GeoTIFFs streamed by GDAL are not limited.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aerocolor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Colorize historical grayscale aerial photographs with GANs."""
