"""The package's own error types: mistakes in what a user gave us, not bugs.

Each subclasses the built-in type it used to be (`ValueError`, `OSError`), so callers that
caught those keep working. Command-line tools catch `UserInputError` and print its message
in one line with exit code 2; anything else is a bug and keeps its traceback.

Every message names the file (or setting) and the problem, and says what to do where a
fix is known.
"""


class UserInputError(Exception):
    """Base class: something the user supplied is wrong; the message says what and where."""


class ConfigError(UserInputError, ValueError):
    """An impossible `Config` setting (the message names the attribute)."""


class DatasetError(UserInputError, ValueError):
    """A dataset file, annotation or image that cannot be used as given."""


class WeightsError(UserInputError, ValueError):
    """A weights file that cannot be loaded into this model (corrupt, wrong layout, wrong shapes)."""


class OutputPathError(UserInputError, OSError):
    """An output file or folder that cannot be written (missing, read-only, disk full)."""
