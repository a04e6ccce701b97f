"""``MigrationSet``: the migrations of one database as a Pulumi dynamic resource.

Inputs carry every migration file (name -> version, description, sha256, transactional flag and
the SQL itself), so

- a preview's diff lists exactly the files that are new or changed (the ``migrations`` map is
  keyed by file name), and ``check`` validates them (names, duplicates, checksums) without a
  database;
- the provider needs nothing from the repository: the engine runs it in a separate Python process
  whose working directory is not the project, and it must work the same from a CI checkout in
  another place. Carrying only checksums would make that process read files it cannot locate;
- the inputs are byte-identical between two evaluations of the program (sorted keys, no absolute
  paths, no timestamps), so a no-op ``pulumi up`` changes nothing.

Operations (STYLE.md, "Dynamic providers"):

- ``check`` and ``diff`` never touch the database (a preview runs only these two); ``check``
  returns a ``CheckFailure`` naming the property and file, and tolerates unknown values;
- ``diff`` compares only what changes the database's desired state: the migration files, the
  repair entries, the database, the server (container id) and image, and ``provider_version``.
  Never the serialized provider, never the timeouts. Nothing ever replaces the resource;
- ``create``/``update`` run :func:`ms5_components.migrations.runner.run` and return the full
  outputs. A failure leaves the history table as the truth: what was applied stays recorded, and
  the next ``pulumi up`` resumes there (a failed ``create`` leaves nothing in Pulumi state, which
  is fine, because the run is idempotent);
- ``delete`` drops nothing (see its docstring).

The DSN is a secret input; it never appears in outputs, and every error message is scrubbed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)

from ms5_components.migrations.plan import (
    Migration,
    RepairEntry,
    migrations_to_inputs,
)
from ms5_components.migrations.runner import RunnerSettings

if TYPE_CHECKING:
    from ms5_components.migrations.runner import RunResult
    from ms5_components.settings import Settings

PROVIDER_VERSION = "1"
"""Bumped when the provider's behaviour changes, so the change shows as a (no-op) update."""

TYPE_TOKEN = "pulumi-python:dynamic/ms5:MigrationSet"  # noqa: S105 - a type token

DIFF_KEYS = ("database", "server_id", "db_image", "migrations", "repair", "provider_version")
"""Inputs whose change means the database may need work. The DSN (it changes with a password
change, which needs no migration), the timeouts and the serialized provider are left out."""

_SETTINGS_LIMITS: dict[str, tuple[int, int]] = {
    "lock_timeout_ms": (1, 3_600_000),
    "statement_timeout_ms": (0, 86_400_000),
    "lock_retries": (0, 100),
    "advisory_lock_wait_seconds": (0, 86_400),
}
_DATABASE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


def _unknown() -> str:
    from pulumi.runtime import rpc

    return str(rpc.UNKNOWN)


def _is_unknown(value: object) -> bool:
    """Whether a value is (or contains) an unknown: the engine's sentinel string, or the SDK's
    ``Unknown`` that the provider host's deserializer turns it into during preview."""
    from pulumi.output import Unknown

    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == _unknown()
    if isinstance(value, Mapping):
        return any(_is_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_is_unknown(v) for v in value)
    return False


@dataclass(frozen=True, kw_only=True)
class MigrationSetProps:
    """The inputs, rebuilt from the engine's raw property dict (numbers arrive as floats)."""

    database: str
    dsn: str
    server_id: str
    db_image: str
    migrations: tuple[Migration, ...]
    repair: tuple[RepairEntry, ...]
    settings: RunnerSettings
    provider_version: str

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> MigrationSetProps:
        from ms5_components.migrations.plan import migrations_from_inputs

        settings_raw = raw.get("settings") or {}
        return cls(
            database=str(raw["database"]),
            dsn=str(raw["dsn"]),
            server_id=str(raw.get("server_id") or ""),
            db_image=str(raw.get("db_image") or ""),
            migrations=migrations_from_inputs(raw["migrations"]),
            repair=tuple(RepairEntry.parse(str(r)) for r in raw.get("repair") or ()),
            settings=RunnerSettings(
                lock_timeout_ms=int(settings_raw.get("lock_timeout_ms", 5_000)),
                statement_timeout_ms=int(settings_raw.get("statement_timeout_ms", 600_000)),
                lock_retries=int(settings_raw.get("lock_retries", 3)),
                advisory_lock_wait_seconds=float(
                    int(settings_raw.get("advisory_lock_wait_seconds", 300))
                ),
            ),
            provider_version=str(raw.get("provider_version") or PROVIDER_VERSION),
        )


def _outputs(props: MigrationSetProps, result: RunResult) -> dict[str, Any]:
    """Every output: the diff basis (no SQL, no DSN) and what the run found. The engine hands
    these back as ``olds`` to ``diff``/``update``."""
    return {
        "database": props.database,
        "server_id": props.server_id,
        "db_image": props.db_image,
        "provider_version": props.provider_version,
        "repair": [str(r) for r in props.repair],
        "migration_files": {m.filename: m.checksum for m in props.migrations},
        "applied_versions": list(result.applied_versions),
        "current_version": result.current_version or "",
        "checksums": dict(sorted(result.checksums.items())),
        "warnings": {v: list(n) for v, n in sorted(result.warnings.items())},
        "last_applied": list(result.applied_now),
        "spent_repairs": list(result.spent_repairs),
        "timescaledb_version": result.extension.installed_version or "",
        "timescaledb_license": result.extension.license or "",
    }


def _diff_basis(props: Mapping[str, Any]) -> dict[str, Any]:
    """What ``diff`` compares, from inputs (news) or outputs (olds) alike: the migrations as
    file name -> checksum (inputs carry the SQL, outputs only the checksum)."""
    basis: dict[str, Any] = {}
    for key in DIFF_KEYS:
        value = props.get(key)
        if key == "migrations" and value is None:
            value = props.get("migration_files")  # olds are the previous outputs
        if key == "migrations" and isinstance(value, Mapping):
            value = {
                name: (entry.get("checksum") if isinstance(entry, Mapping) else entry)
                for name, entry in value.items()
            }
        elif key == "repair":
            value = list(value or [])
        basis[key] = value
    return basis


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The meaningful inputs that differ (an unknown new value counts as a change)."""
    old, new = _diff_basis(olds), _diff_basis(news)
    return [k for k in DIFF_KEYS if _is_unknown(new[k]) or old[k] != new[k]]


class MigrationSetProvider(ResourceProvider):
    """Dynamic provider of :class:`MigrationSet`. Holds no state: every call connects anew."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Validate the inputs without a database; unknown values (preview) are let through."""
        from ms5_components.errors import MigrationFileErrors
        from ms5_components.migrations.plan import migrations_from_inputs

        failures: list[CheckFailure] = []
        database = news.get("database")
        if not _is_unknown(database) and (
            not isinstance(database, str) or not _DATABASE_RE.fullmatch(database)
        ):
            failures.append(CheckFailure("database", f"expected a database name, got {database!r}"))
        dsn = news.get("dsn")
        if not _is_unknown(dsn) and (not isinstance(dsn, str) or not dsn.strip()):
            failures.append(CheckFailure("dsn", "expected the database's DSN (value not shown)"))
        raw = news.get("migrations")
        if not _is_unknown(raw):
            if not isinstance(raw, Mapping):
                failures.append(
                    CheckFailure("migrations", "expected a map of file name to migration")
                )
            else:
                try:
                    migrations_from_inputs(raw)
                except MigrationFileErrors as exc:
                    failures.extend(CheckFailure("migrations", str(e)) for e in exc.errors)
        repair = news.get("repair") or []
        if not _is_unknown(repair):
            if not isinstance(repair, list):
                failures.append(CheckFailure("repair", "expected a list of <version>[:<sha256>]"))
            else:
                for entry in repair:
                    try:
                        RepairEntry.parse(str(entry))
                    except ValueError as exc:
                        failures.append(CheckFailure("repair", str(exc)))
        settings = news.get("settings") or {}
        if not _is_unknown(settings) and isinstance(settings, Mapping):
            for key, (lo, hi) in _SETTINGS_LIMITS.items():
                value = settings.get(key)
                if value is None:
                    continue
                if (
                    not isinstance(value, (int, float))
                    or int(value) != value
                    or not lo <= value <= hi
                ):
                    failures.append(
                        CheckFailure(
                            f"settings.{key}",
                            f"expected a whole number from {lo} to {hi}, got {value!r}",
                        )
                    )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Meaningful inputs only; never a replacement (the history lives in the database)."""
        changed = changed_keys(olds, news)
        return DiffResult(
            changes=bool(changed), replaces=[], stables=[], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Apply every pending migration (and bring the extension current in every database)."""
        parsed = MigrationSetProps.from_raw(props)
        result = _run(parsed, check_all_databases=True)
        return CreateResult(id_=f"ms5-migrations-{parsed.database}", outs=_outputs(parsed, result))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Apply what is pending; after a server or image change, first check the extension in
        every database. Returns the full outputs."""
        parsed = MigrationSetProps.from_raw(news)
        server_changed = (
            olds.get("server_id") != parsed.server_id or olds.get("db_image") != parsed.db_image
        )
        result = _run(parsed, check_all_databases=server_changed)
        return UpdateResult(outs=_outputs(parsed, result))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Drops nothing: destroying (or removing) a MigrationSet leaves every table, row and the
        history in the database. Dropping data is never a side effect of ``pulumi destroy``; do it
        deliberately with SQL if it is really wanted."""


def _run(props: MigrationSetProps, *, check_all_databases: bool) -> RunResult:
    import psycopg

    from ms5_components.errors import MigrationError
    from ms5_components.migrations.runner import run, scrub

    try:
        return run(
            props.dsn,
            props.migrations,
            repairs=props.repair,
            settings=props.settings,
            check_all_databases=check_all_databases,
        )
    except MigrationError as exc:
        # Same exception type (the engine shows it), message prefixed and scrubbed once more.
        exc.args = (f"MigrationSet ms5-migrations-{props.database}: {scrub(str(exc), props.dsn)}",)
        raise exc from None
    except psycopg.Error as exc:
        raise MigrationError(
            f"MigrationSet ms5-migrations-{props.database}: unexpected database error: "
            f"{scrub(str(exc), props.dsn)}; run `pulumi up` again (the history table records "
            "what was applied)"
        ) from None


# --------------------------------------------------------------------------------------------------
# The resource
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MigrationSetArgs:
    """Inputs of :class:`MigrationSet`. None of them replaces the resource."""

    database: pulumi.Input[str]
    """Database name (for the resource id and messages). Changing it runs the migrations there."""
    dsn: pulumi.Input[str]
    """Superuser DSN from the Pulumi host (made secret here). Not compared by ``diff``."""
    migrations: Sequence[Migration]
    """The migration files (from :func:`~ms5_components.migrations.plan.load_directory`)."""
    server_id: pulumi.Input[str] = ""
    """The database container's id: a new server (replaced container) re-runs the migrations
    against its own history and checks the extension in every database."""
    db_image: pulumi.Input[str] = ""
    """The database image reference: a change checks (and updates) the TimescaleDB extension in
    every database before migrating."""
    repair: Sequence[str] = ()
    """``ms5:migrationRepair`` entries (``<version>`` or ``<version>:<sha256>``)."""
    settings: RunnerSettings = field(default_factory=RunnerSettings)
    """Timeouts and retries; not compared by ``diff`` (a change alone runs nothing)."""


class MigrationSet(pulumi.dynamic.Resource, module="ms5", name="MigrationSet"):
    """The versioned migrations of one database (see the module docstring).

    Depend on it (``depends_on=[migrations]``) from every resource that reads the schema.
    ``pulumi destroy`` drops nothing.
    """

    database: pulumi.Output[str]
    """Database the migrations ran in."""
    applied_versions: pulumi.Output[list[str]]
    """Versions applied (outcome applied or applied_with_warnings), in order."""
    current_version: pulumi.Output[str]
    """Highest applied version ("" before any)."""
    checksums: pulumi.Output[dict[str, str]]
    """Version -> sha256 recorded in the history (retired versions included)."""
    migration_files: pulumi.Output[dict[str, str]]
    """File name -> sha256 of the files this resource was last run with (the diff basis)."""
    warnings: pulumi.Output[dict[str, list[str]]]
    """Version -> notes recorded in the history (WARNINGs of skipped licensed features,
    repairs, earlier failures)."""
    last_applied: pulumi.Output[list[str]]
    """Versions applied by the last create/update."""
    timescaledb_version: pulumi.Output[str]
    """Installed TimescaleDB version in the database."""
    timescaledb_license: pulumi.Output[str]
    """``timescaledb.license`` of the server (apache or timescale)."""

    def __init__(
        self, name: str, args: MigrationSetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        s = args.settings
        super().__init__(
            MigrationSetProvider(),
            name,
            {
                "database": args.database,
                "dsn": pulumi.Output.secret(args.dsn),
                "server_id": args.server_id,
                "db_image": args.db_image,
                "migrations": migrations_to_inputs(args.migrations),
                "repair": sorted(str(RepairEntry.parse(r)) for r in args.repair),
                "settings": {
                    "advisory_lock_wait_seconds": int(s.advisory_lock_wait_seconds),
                    "lock_retries": s.lock_retries,
                    "lock_timeout_ms": s.lock_timeout_ms,
                    "statement_timeout_ms": s.statement_timeout_ms,
                },
                "provider_version": PROVIDER_VERSION,
                "applied_versions": None,
                "migration_files": None,
                "current_version": None,
                "checksums": None,
                "warnings": None,
                "last_applied": None,
                "spent_repairs": None,
                "timescaledb_version": None,
                "timescaledb_license": None,
            },
            opts,
        )


# --------------------------------------------------------------------------------------------------
# From stack settings
# --------------------------------------------------------------------------------------------------


def migrations_dir(settings: Settings, project_dir: Path | None = None) -> Path:
    """``ms5:migrationsDir`` resolved against the Pulumi project directory (the directory of
    Pulumi.yaml: the program's working directory under the CLI); empty means the repository's
    ``migrations/``."""
    from ms5_components.migrations import resolve_migrations_dir

    return resolve_migrations_dir(str(settings.raw.get("migrationsDir") or ""), project_dir)


def runner_settings(settings: Settings) -> RunnerSettings:
    """The ``ms5:migration*`` settings as :class:`RunnerSettings`."""

    def get(key: str, default: int) -> int:
        value = settings.raw.get(key, default)
        return value if isinstance(value, int) else default

    return RunnerSettings(
        lock_timeout_ms=get("migrationLockTimeoutMs", 5_000),
        statement_timeout_ms=get("migrationStatementTimeoutMs", 600_000),
        lock_retries=get("migrationLockRetries", 3),
        advisory_lock_wait_seconds=float(get("migrationAdvisoryLockWaitSeconds", 300)),
    )


def repair_entries(settings: Settings) -> tuple[str, ...]:
    value = settings.raw.get("migrationRepair") or ()
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()
