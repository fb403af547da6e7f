"""Errors a user can cause: each message names the input and the fix."""


class AerocolorError(Exception):
    """A problem with the user's input, shown as one line without a traceback."""


class ImageReadError(AerocolorError):
    pass


class ConfigError(AerocolorError, ValueError):
    """A config value (file, --set override or option) that cannot work; names the key."""


class CheckpointError(AerocolorError):
    pass


class TrainingError(AerocolorError):
    """Training cannot go on (a loss became NaN or infinite, ...)."""


class OutputError(AerocolorError):
    """An output path that cannot be written."""
