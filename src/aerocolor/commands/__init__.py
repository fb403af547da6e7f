"""Sub-commands of the ``aerocolor`` CLI: the app and its shared options (``app.py``), then one
module per area; each registers on ``app.app``, and ``cli.py`` imports them all."""
