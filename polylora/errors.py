"""User-facing errors: each carries one readable line naming the problem and the fix."""

from __future__ import annotations


class PolyloraError(Exception):
    """An error caused by the user's input (config, data, checkpoint, environment).

    The entry points print ``str(error)`` on one line and exit non-zero, without a traceback.
    """


class ConfigError(PolyloraError):
    """An invalid configuration value or combination."""


class DataError(PolyloraError):
    """A data file or data source that cannot be used as given."""
