"""Restoring a backup by hand: ``./ms5 restore STACK [BACKUP] [--target DB] [--force]``.

Without BACKUP it lists the stack's backups. With one, in this order, and touching nothing until
every check passed:

1. the backup is verified (the script's checksums, sizes and ``pg_restore --list``, then the
   Python verifier): a damaged backup is refused;
2. the server's PostgreSQL major and available TimescaleDB versions are compared with the
   manifest's: a mismatch is refused naming both versions and the upgrade path;
3. the target database (default: the backed-up database's name) must be absent or empty; a
   non-empty one is refused unless ``--force`` (then it is dropped and recreated, keeping what
   belongs to the database rather than to its contents - owner, privileges such as the
   monitoring roles' CONNECT, ``ALTER DATABASE ... SET`` settings - which a dump holds only when
   taken with ``--create``, as :func:`database_properties` reads them);
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


def psql(target: runner.Target, database: str, query: str) -> str:
    """Run one query with ``psql`` next to the server (unaligned, tuples only); its output."""
    exe = f"{target.pg_bindir}/psql" if target.pg_bindir else "psql"
    done = target.executor.run(
        [exe, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", query],
        env=runner.script_env(target),
        timeout=300.0,
    )
    if done.returncode != 0:
        detail = runner.scrub(done.stderr.strip(), target.password)
        raise BackupError(f"database {database} ({target.executor.describe()}): {detail}")
    return done.stdout.strip()


def server_versions(target: runner.Target) -> ServerVersions:
    text = psql(
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

    exists = psql(
        target,
        "postgres",
        sql.SQL("SELECT count(*) FROM pg_database WHERE datname = {}")
        .format(sql.Literal(database))
        .as_string(None),
    )
    if exists != "1":
        return None
    return int(
        psql(
            target,
            database,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname !~ '^(pg_toast|_timescaledb|timescaledb_)' "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')",
        )
    )


@dataclass(frozen=True, kw_only=True)
class DatabaseProperties:
    """What belongs to a database rather than to its contents (a dump taken without
    ``--create`` does not hold it): kept when ``--force`` replaces the database."""

    owner: str
    grants: tuple[tuple[str, str, bool], ...] = ()
    """(grantee, privilege, grantable) beyond the defaults, in the ACL's order ("" = PUBLIC)."""
    revokes: tuple[tuple[str, str], ...] = ()
    """(grantee, privilege) of the defaults the database did not have ("" = PUBLIC)."""
    settings: tuple[str, ...] = ()
    """``name=value`` of each ``ALTER DATABASE ... SET`` (pg_db_role_setting, all roles)."""


_LIST_SETTINGS = frozenset(
    {
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    }
)
"""Settings whose value is a list of separately quoted items (pg_dump quotes them so)."""
_PRIVILEGES = frozenset({"CONNECT", "CREATE", "TEMPORARY"})
"""The privileges a database has (``aclexplode``'s names)."""


def database_properties(target: runner.Target, database: str) -> DatabaseProperties:
    """The owner, non-default privileges and settings of ``database`` (read before it is
    replaced)."""
    from psycopg import sql

    query = sql.SQL(
        "WITH d AS (SELECT oid, datdba, coalesce(datacl, acldefault('d', datdba)) AS acl "
        "FROM pg_database WHERE datname = {db}), "
        "have AS (SELECT a.grantee, a.privilege_type, a.is_grantable, a.n FROM d, "
        "aclexplode(d.acl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)), "
        "dflt AS (SELECT a.grantee, a.privilege_type, a.is_grantable FROM d, "
        "aclexplode(acldefault('d', d.datdba)) AS a) "
        "SELECT json_build_object("
        "'owner', (SELECT pg_get_userbyid(datdba) FROM d), "
        "'grants', coalesce((SELECT json_agg(json_build_array(CASE WHEN h.grantee = 0 THEN '' "
        "ELSE pg_get_userbyid(h.grantee) END, h.privilege_type, h.is_grantable) ORDER BY h.n) "
        "FROM have h WHERE NOT EXISTS (SELECT 1 FROM dflt f WHERE f.grantee = h.grantee "
        "AND f.privilege_type = h.privilege_type AND f.is_grantable = h.is_grantable)), '[]'), "
        "'revokes', coalesce((SELECT json_agg(json_build_array(CASE WHEN f.grantee = 0 THEN '' "
        "ELSE pg_get_userbyid(f.grantee) END, f.privilege_type) ORDER BY f.grantee, "
        "f.privilege_type) FROM dflt f WHERE NOT EXISTS (SELECT 1 FROM have h "
        "WHERE h.grantee = f.grantee AND h.privilege_type = f.privilege_type)), '[]'), "
        "'settings', coalesce((SELECT to_json(s.setconfig) FROM pg_db_role_setting s, d "
        "WHERE s.setdatabase = d.oid AND s.setrole = 0), '[]'))"
    ).format(db=sql.Literal(database))
    data = json.loads(psql(target, "postgres", query.as_string(None)))
    return DatabaseProperties(
        owner=str(data["owner"]),
        grants=tuple((str(g), str(p), bool(o)) for g, p, o in data["grants"]),
        revokes=tuple((str(g), str(p)) for g, p in data["revokes"]),
        settings=tuple(str(v) for v in data["settings"] or ()),
    )


def properties_sql(database: str, props: DatabaseProperties) -> list[str]:
    """The statements that give a new ``database`` the properties ``props`` (pure): owner, then
    the revoked defaults, the grants in the ACL's order, the settings."""
    from psycopg import sql

    db = sql.Identifier(database)

    def grantee(name: str) -> sql.Composable:
        return sql.SQL("PUBLIC") if name == "" else sql.Identifier(name)

    def privilege_sql(privilege: str) -> sql.Composable:
        if privilege not in _PRIVILEGES:
            raise BackupError(
                f"database {database}: unexpected privilege {privilege!r} in its ACL; expected "
                f"one of {', '.join(sorted(_PRIVILEGES))}"
            )
        return sql.SQL(privilege)

    statements = [sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(props.owner))]
    for name, privilege in props.revokes:
        statements.append(
            sql.SQL("REVOKE {} ON DATABASE {} FROM {}").format(
                privilege_sql(privilege), db, grantee(name)
            )
        )
    for name, privilege, grantable in props.grants:
        statements.append(
            sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                privilege_sql(privilege),
                db,
                grantee(name),
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )
    for setting in props.settings:
        name, _, value = setting.partition("=")
        if name in _LIST_SETTINGS:
            items = [item.strip().strip('"') for item in value.split(",") if item.strip()]
            value_sql: sql.Composable = sql.SQL(", ").join(sql.Literal(i) for i in items)
        else:
            value_sql = sql.Literal(value)
        statements.append(
            sql.SQL("ALTER DATABASE {} SET {} TO {}").format(db, sql.Identifier(name), value_sql)
        )
    return [s.as_string(None) for s in statements]


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
    kept: DatabaseProperties | None = None
    if tables is not None:
        kept = database_properties(target, into)
        psql(
            target,
            "postgres",
            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident).as_string(None),
        )
    psql(
        target,
        "postgres",
        sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident).as_string(None),
    )
    if kept is not None:
        # Right after CREATE DATABASE, where pg_restore of a dump taken with --create puts them.
        for statement in properties_sql(into, kept):
            psql(target, "postgres", statement)
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
