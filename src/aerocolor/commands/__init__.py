"""Sub-commands of the ``aerocolor`` CLI, one module per area; each registers on ``cli.app``."""
