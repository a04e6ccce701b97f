"""Versioned, checksummed, locked and resumable SQL migrations as a Pulumi resource.

- :mod:`.plan`: the pure plan (files, checksums, statements, drift), no database needed;
- :mod:`.runner`: the online executor (psycopg 3);
- :mod:`.extension`: TimescaleDB version/license detection and the extension upgrade;
- :mod:`.provider`: the ``MigrationSet`` dynamic resource.

The repository's ``migrations/`` directory holds the MS5.0 schema (the default set).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIRECTORY_NAME = "migrations"


def repository_migrations_dir() -> Path:
    """The repository's ``migrations/`` directory (the default schema), found from this package
    (an editable install of ``components/``)."""
    return Path(__file__).resolve().parents[4] / DEFAULT_DIRECTORY_NAME


def resolve_migrations_dir(raw: str, project_dir: Path | None = None) -> Path:
    """The directory an ``ms5:migrationsDir`` value names: relative to the Pulumi project
    directory (the directory of Pulumi.yaml: the program's working directory under the CLI;
    default: this process's), the repository's ``migrations/`` when empty."""
    if not raw:
        return repository_migrations_dir()
    path = Path(raw)
    if path.is_absolute():
        return path
    return (project_dir or Path.cwd()) / path
