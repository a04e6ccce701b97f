"""Restoring a backup by hand: ``./ms5 restore STACK [BACKUP] [--target DB] [--force]``.

Without BACKUP it lists the stack's backups. With one, in this order, and touching nothing until
every check passed:

1. the backup is verified (the script's checksums, sizes and ``pg_restore --list``, then the
   Python verifier): a damaged backup is refused;
2. the server's PostgreSQL major and available TimescaleDB versions are compared with the
   manifest's: a mismatch is refused naming both versions and the upgrade path;
3. the target database (default: the backed-up database's name) must be absent or empty; a
   non-empty one is refused unless ``--force`` (then it is dropped and recreated);
4. the restore (TimescaleDB's pre/post restore, catalog first, then in parallel) is compared
   with the manifest's row, chunk and continuous-aggregate counts.

The commands run inside the stack's database container through its Docker engine, like the
deploy-time backups, so this machine needs no PostgreSQL tools.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ms5_components.backups import runner
from ms5_components.backups.manifest import Manifest
from ms5_components.errors import BackupError, Ms5Error

_IDENT_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True, kw_only=True)
class ServerVersions:
    postgres_version: str
    postgres_version_num: int
    timescaledb_versions: tuple[str, ...]
    """Versions of the extension this server can create (``pg_available_extension_versions``)."""

    @property
    def postgres_major(self) -> int:
        return self.postgres_version_num // 10000


def version_problems(
    manifest: Manifest, server: ServerVersions, *, image_hint: str = ""
) -> list[str]:
    """Why ``manifest`` cannot be restored on ``server`` (empty: it can), each naming both
    versions and the way forward."""
    meta = manifest.metadata
    problems: list[str] = []
    if meta.postgres_major != server.postgres_major:
        problems.append(
            f"backup {manifest.backup} is of PostgreSQL {meta.postgres_version} (major "
            f"{meta.postgres_major}); this server runs PostgreSQL {server.postgres_version} (major "
            f"{server.postgres_major}). Restore it on a PostgreSQL {meta.postgres_major} server "
            f"(an image tagged -pg{meta.postgres_major}), then move to {server.postgres_major} "
            "with pg_upgrade or a new dump taken there"
        )
    wanted = meta.timescaledb_version
    if wanted and wanted not in server.timescaledb_versions:
        have = ", ".join(server.timescaledb_versions) or "none"
        problems.append(
            f"backup {manifest.backup} has TimescaleDB {wanted}; this server offers TimescaleDB "
            f"{have}. Restore on a server that offers {wanted} (e.g. "
            f"{image_hint or 'timescale/timescaledb'}:{wanted}-pg{meta.postgres_major}), then "
            "upgrade with ALTER EXTENSION timescaledb UPDATE (a newer image applies it at deploy)"
        )
    return problems


def _psql(target: runner.Target, database: str, query: str) -> str:
    psql = f"{target.pg_bindir}/psql" if target.pg_bindir else "psql"
    done = target.executor.run(
        [psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", query],
        env=runner.script_env(target),
        timeout=300.0,
    )
    if done.returncode != 0:
        detail = runner.scrub(done.stderr.strip(), target.password)
        raise BackupError(f"database {database} ({target.executor.describe()}): {detail}")
    return done.stdout.strip()


def server_versions(target: runner.Target) -> ServerVersions:
    text = _psql(
        target,
        "postgres",
        "SELECT json_build_object('v', current_setting('server_version'), 'n', "
        "current_setting('server_version_num')::int, 't', (SELECT coalesce(json_agg(version "
        "ORDER BY version), '[]') FROM pg_available_extension_versions "
        "WHERE name = 'timescaledb'))",
    )
    data = json.loads(text)
    return ServerVersions(
        postgres_version=str(data["v"]),
        postgres_version_num=int(data["n"]),
        timescaledb_versions=tuple(str(v) for v in data["t"]),
    )


def target_tables(target: runner.Target, database: str) -> int | None:
    """User tables in ``database`` (None: no such database)."""
    from psycopg import sql

    exists = _psql(
        target,
        "postgres",
        sql.SQL("SELECT count(*) FROM pg_database WHERE datname = {}")
        .format(sql.Literal(database))
        .as_string(None),
    )
    if exists != "1":
        return None
    return int(
        _psql(
            target,
            database,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname !~ '^(pg_toast|_timescaledb|timescaledb_)' "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')",
        )
    )


@dataclass(frozen=True, kw_only=True)
class RestoreOutcome:
    backup: str
    target: str
    rto_seconds: float


def restore(
    target: runner.Target,
    name: str,
    *,
    into: str | None = None,
    force: bool = False,
    settings: runner.BackupSettings | None = None,
    image_hint: str = "",
) -> RestoreOutcome:
    """Restore backup ``name`` into database ``into`` (see the module docstring)."""
    into = into or target.database
    if not into or set(into) - _IDENT_OK or into[0].isdigit():
        raise BackupError(f"--target {into!r}: expected a lower-case database name [a-z0-9_]")
    manifest = runner.read_manifest(target, name)
    problems = runner.verify_backup(target, name, settings)
    if problems:
        raise BackupError(f"backup {name} is not restorable: {'; '.join(problems)}")
    mismatch = version_problems(manifest, server_versions(target), image_hint=image_hint)
    if mismatch:
        raise BackupError("refused before touching anything: " + "; ".join(mismatch))
    tables = target_tables(target, into)
    if tables and not force:
        raise BackupError(
            f"target database {into} is not empty ({tables} tables); restore into another one "
            f"with --target NEW_NAME, or replace it with --force (drops {into} and its data)"
        )
    from psycopg import sql

    ident = sql.Identifier(into)
    if tables is not None:
        _psql(
            target,
            "postgres",
            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident).as_string(None),
        )
    _psql(
        target,
        "postgres",
        sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident).as_string(None),
    )
    result = runner.run_script(target, "restore", name, into, settings=settings)
    if not result.ok or not result.data.get("ok"):
        detail = result.data.get("mismatches") or result.data.get("error") or result.stderr
        raise BackupError(f"restore of {name} into {into} failed: {detail}")
    return RestoreOutcome(
        backup=name, target=into, rto_seconds=float(result.data.get("rto_seconds") or 0.0)
    )


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def stack_target(project_dir: Path, stack: str) -> tuple[runner.Target, str]:
    """The stack's database container and backup directory, from its stack file (and the
    image, for messages)."""
    from ms5_components.backups.executor import DockerExecutor
    from ms5_components.backups.wiring import SOCKET_DIR, db_container_name
    from ms5_components.database.timescaledb import BACKUP_DIR
    from ms5_components.settings import load_settings
    from ms5_components.stack_files import config_string, read_stack_config, stack_file

    path = stack_file(project_dir, stack)
    if not path.is_file():
        raise BackupError(f"no {path.name}: name one of the project's stacks")
    raw = {k: config_string(v) for k, v in read_stack_config(path).items()}
    settings = load_settings(raw, stack=stack)
    target = runner.Target(
        executor=DockerExecutor(
            docker_host=settings.docker_host, container=db_container_name(settings)
        ),
        backup_dir=BACKUP_DIR,
        database=settings.database.name,
        connection={"PGHOST": SOCKET_DIR, "PGPORT": "5432", "PGUSER": settings.database.superuser},
    )
    return target, settings.database.image.repository


def _print_list(target: runner.Target) -> None:
    entries = runner.list_backups(target)
    if not entries:
        print(f"no backups of database {target.database} in {target.backup_dir}")
        return
    print(f"{'backup':40} {'state':11} {'size':>12}  versions / reason")
    for entry in sorted(entries, key=lambda e: (e.epoch, e.name), reverse=True):
        detail = ""
        size = ""
        if entry.state == "verified":
            try:
                m = runner.read_manifest(target, entry.name)
            except BackupError as exc:
                detail = str(exc)
            else:
                size = str(m.size_bytes)
                detail = (
                    f"PostgreSQL {m.metadata.postgres_version}, TimescaleDB "
                    f"{m.metadata.timescaledb_version or '-'} "
                    f"({m.metadata.timescaledb_license or '-'}), schema "
                    f"{m.metadata.schema_version or '-'}; {m.reason}"
                )
        print(f"{entry.name:40} {entry.state:11} {size:>12}  {detail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./ms5 restore",
        description="List a stack's backups, or restore one (verified and version-checked first).",
    )
    parser.add_argument("stack")
    parser.add_argument("backup", nargs="?", help="backup name (omit to list the backups)")
    parser.add_argument("--target", help="database to restore into (default: the stack's dbName)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty target")
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore --jobs (default 2)")
    args = parser.parse_args(argv)
    try:
        target, image = stack_target(Path.cwd(), args.stack)
        if not args.backup:
            _print_list(target)
            return 0
        outcome = restore(
            target,
            args.backup,
            into=args.target,
            force=args.force,
            settings=runner.BackupSettings(jobs=args.jobs),
            image_hint=image,
        )
    except Ms5Error as exc:
        print(f"ms5 restore: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored {outcome.backup} into database {outcome.target} in {outcome.rto_seconds:.1f} s; "
        "row, chunk and continuous-aggregate counts match the manifest"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
