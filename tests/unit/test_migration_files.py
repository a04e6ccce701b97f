"""The helper tests use to add a migration after the repository's highest version."""

from __future__ import annotations

import shutil
from pathlib import Path

from migration_files import add_migration, next_migration, next_version

from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory, parse_filename


def test_added_migration_comes_after_every_repository_migration(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), directory)
    existing = load_directory(directory)
    assert existing
    path = add_migration(directory, "added_by_a_test", "SELECT 1;\n")
    migrations = load_directory(directory)  # no version collision
    assert len(migrations) == len(existing) + 1
    added = next(m for m in migrations if m.filename == path.name)
    assert all(added.key > m.key for m in existing)
    assert added.key == (max(m.key for m in existing)[0] + 1,)


def test_numbering_follows_whatever_the_directory_holds(tmp_path: Path) -> None:
    (tmp_path / "V0041__a.sql").write_text("SELECT 1;\n")
    (tmp_path / "V7__b.sql").write_text("SELECT 1;\n")
    assert next_version(tmp_path) == "42"
    assert next_migration(tmp_path, "c") == "V0042__c.sql"
    assert parse_filename(next_migration(tmp_path, "c")) == ("42", "c")
