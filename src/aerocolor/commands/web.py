"""``aerocolor serve``: the web app, on this machine only unless told otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app

LOOPBACK = ("127.0.0.1", "localhost", "::1")
Opt = typer.Option


@app.command()
def serve(
    host: Annotated[str, Opt(help="Address to listen on (0.0.0.0: all interfaces).")] = "127.0.0.1",
    port: Annotated[int, Opt(help="TCP port.")] = 8000,
    models: Annotated[Path | None, Opt(help="Folder of checkpoints to offer beside the "
                                            "bundled model.")] = None,
    device: Annotated[str, Opt(help="auto, cpu, cuda ...")] = "auto",
    workers: Annotated[int, Opt(help="Images colorized at the same time.")] = 2,
    queue_size: Annotated[int, Opt(help="Jobs that may wait; more get 503 with Retry-After.")] = 32,
    keep_minutes: Annotated[float, Opt(help="How long results are kept.")] = 60.0,
    max_upload_mb: Annotated[float, Opt(help="Largest file accepted.")] = 200.0,
    max_megapixels: Annotated[float, Opt(help="Largest image accepted (width x height).")] = 64.0,
    tile: Annotated[int, Opt(help="Tile size for large images.")] = 512,
) -> None:
    """Run the web app: upload an aerial photo, colorize it, compare and download."""
    from ..web import WebSettings
    from ..web import serve as run_server

    if host not in LOOPBACK:
        typer.echo(f"warning: listening on {host}; anyone who can reach it can use this server",
                   err=True)
    settings = WebSettings(models_dir=models, device=device, workers=workers,
                           queue_size=queue_size, keep_seconds=keep_minutes * 60,
                           max_upload_bytes=int(max_upload_mb * 2**20),
                           max_pixels=int(max_megapixels * 1e6), tile=tile)
    run_server(settings, host, port)
