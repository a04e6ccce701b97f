"""The project's exception hierarchy: one root, one subclass per domain.

Every message names the key, file, resource or version at fault and the next step; none carries a
secret value.
"""

from __future__ import annotations


class Ms5Error(Exception):
    """Root of every error this project raises on purpose."""


class SettingsError(Ms5Error):
    """A stack setting is missing, malformed or out of range.

    ``key`` is the fully qualified config key (``ms5:dbMemoryMb``).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class SettingsErrors(Ms5Error):
    """Several settings are wrong at once; all are reported together so one edit fixes all."""

    def __init__(self, errors: list[SettingsError]) -> None:
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(
            f"{len(errors)} invalid stack setting(s); fix them with `pulumi config set`:\n{lines}"
        )
        self.errors = errors


class PreflightError(Ms5Error):
    """The Docker host is not fit to run the database (engine, disk, memory)."""


class MigrationError(Ms5Error):
    """A migration could not be planned or applied."""


class MonitoringError(Ms5Error):
    """Monitoring configuration (exporter queries, Prometheus, Grafana) is invalid."""
