"""Migration files that tests add to a copy of the repository's migrations.

A test that adds a migration numbers it after the highest version in the directory, whatever
the repository has reached, so a new repository migration never collides with a test's file.
"""

from __future__ import annotations

from pathlib import Path

from ms5_components.migrations.plan import format_version, load_directory


def next_version(directory: Path) -> str:
    """The canonical version right after the highest one in ``directory`` (``"8"`` after 7)."""
    highest = max((m.key for m in load_directory(directory)), default=(0,))
    return format_version((highest[0] + 1,))


def next_migration(directory: Path, description: str) -> str:
    """File name of a migration numbered after the highest version in ``directory``."""
    return f"V{int(next_version(directory)):04d}__{description}.sql"


def add_migration(directory: Path, description: str, text: str) -> Path:
    """Write ``text`` as the next migration of ``directory``; returns its path."""
    path = directory / next_migration(directory, description)
    path.write_text(text)
    return path
