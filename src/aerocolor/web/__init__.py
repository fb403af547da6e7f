"""The web app: ``aerocolor serve`` runs it; ``create_app`` builds it for any ASGI server."""

from .app import WebSettings, create_app

__all__ = ["WebSettings", "create_app", "serve"]


def serve(settings: WebSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
