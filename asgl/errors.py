"""The one family of errors meant for the user: a message they can act on, as it is.

Every problem a user can fix (a recipe, an override, missing data, a checkpoint, a backend or device
that cannot run here, a run folder in use) raises a subclass of :class:`UserError`. The CLI prints the
message in one line (``error: ...``) and exits 2; anything else is a bug and keeps its traceback.
This module imports nothing heavy, so the CLI can catch these errors before torch is loaded.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole message."""


class UsageError(UserError):
    """Command-line flags that cannot be used together or as given (not a recipe problem)."""


class RecipeError(UserError, ValueError):
    """A recipe or override that cannot be used (key, value and what was expected)."""


class DataMissingError(UserError):
    """Dataset files are missing or unreadable; the message says what and where to put it."""


class ModelDataMismatch(UserError, ValueError):
    """The recipe's model cannot take the recipe's data (channels, classes, input kind)."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or written."""


class BackendUnavailable(UserError):
    """A LIF backend, device or precision that cannot run on this machine."""


class RunFolderBusy(UserError):
    """Another live process is writing the run folder."""


class ExportUnsupported(UserError):
    """A network, layer or option that the chosen export format cannot express exactly."""
