"""User-facing errors: each carries one readable line naming the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable


class PolyloraError(Exception):
    """An error caused by the user's input (config, data, checkpoint, environment).

    The entry points print ``str(error)`` on one line and exit non-zero, without a traceback.
    """


class ConfigError(PolyloraError):
    """An invalid configuration value or combination."""

    @classmethod
    def listing(cls, problems: Iterable[str]) -> ConfigError:
        """One error for several problems: the problem itself when there is one, else
        ``N problems in the config: (1) ...; (2) ...`` on one line."""
        found = list(problems)
        if len(found) == 1:
            return cls(found[0])
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(found, 1))
        return cls(f"{len(found)} problems in the config: {listed}")


class Problems(list[str]):
    """The readable problems a ``check_<group>`` function finds (the one validation style,
    see :mod:`polylora.train.config_checks`): ``check`` records a message when a condition
    fails; ``raise_any`` raises one :class:`ConfigError` listing them all."""

    def check(self, condition: bool, message: str) -> bool:
        """Record ``message`` unless ``condition`` holds; returns ``condition``."""
        if not condition:
            self.append(message)
        return condition

    def raise_any(self) -> None:
        """Raise one ConfigError listing every problem recorded (none: return)."""
        raise_problems(self)


def raise_problems(problems: Iterable[str]) -> None:
    """Raise one :class:`ConfigError` listing ``problems``; return if there are none."""
    found = list(problems)
    if found:
        raise ConfigError.listing(found)


class DataError(PolyloraError):
    """A data file or data source that cannot be used as given."""
