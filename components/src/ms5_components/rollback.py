"""``./ms5 rollback STACK``: back to the last deploy that verified green.

The record is the Verification resource's ``lastGood`` output in the stack's state. A red
verification is recorded (its report is in the state) but carries the previous ``lastGood``
forward, and the DeployGate then fails the deploy: after a bad deploy, ``lastGood`` still
describes the last good one - the database image (digest and the ``dbImage`` setting), every
non-secret setting, the schema version, the TimescaleDB version and the migration files it ran
with.

The plan (:func:`plan_rollback`, pure) compares that record with the stack now:

- settings that differ are set back (``pulumi config set``), the image with them; when the
  failed deploy ran another image digest than the last good one under the same ``ms5:dbImage``
  (a tag that moved), the setting is pinned to the good digest (``repo:tag@sha256:...``); and
  ``ms5:verificationRunId`` is set to one naming the deploy returned to, so the verification runs
  again on what the rollback restored (its other inputs may equal what it last verified);
- when the failed deploy changed the data's shape - the schema version applied in the database
  (``ms5_meta.schema_history``) or the TimescaleDB version installed there (``pg_extension``)
  differ from the record - the pre-change backup must be restored first, through the restore
  command (``./ms5 restore STACK BACKUP --force``), which refuses a backup whose
  PostgreSQL/TimescaleDB versions do not fit the server before touching anything. The versions
  are read from the database, never from the MigrationSet's state: a deploy that failed part-way
  keeps the old version in state although its migrations committed. A database that cannot be
  read stops the rollback (:func:`read_state`): guessing from the state could skip a restore
  the data needs;
- the backup given with ``--backup`` must be of the record's schema version and TimescaleDB
  version (its manifest, :func:`backup_problems`): restoring another one would not bring the
  last good data back;
- migration files that the last good deploy did not have, or whose checksum differs from the one
  it recorded, in the directory the rollback's ``pulumi up`` reads (``ms5:migrationsDir`` as the
  plan leaves it, :func:`next_migrations_dir`), would be applied again or refused as drift: the
  rollback stops and names them (check out the last good commit, or move them aside);
- then ``pulumi up`` redeploys the previous image and settings, and the verification runs again.

Nothing is done before the whole plan is known; ``--dry-run`` prints it and stops.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ms5_components.errors import Ms5Error, RollbackError

if TYPE_CHECKING:
    from ms5_components.backups.runner import Target

VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
NAMESPACE = "ms5"
RUN_ID_KEY = "verificationRunId"
"""Set by the rollback itself (:func:`rollback_run_id`), never set back: the restored database
changed outside Pulumi, so the rollback's ``pulumi up`` must run the verification again even
when every other input of the Verification equals what it last verified."""


@dataclass(frozen=True, kw_only=True)
class StackState:
    """What the rollback reads from the stack's state and config."""

    last_good: Mapping[str, Any] | None
    """The Verification's ``lastGood`` output (None: never verified green)."""
    schema_version: str
    """The newest version applied in the stack's database (``ms5_meta.schema_history``; "" when
    none): what the failed deploy left, whatever the MigrationSet's state says."""
    extension_version: str
    """The TimescaleDB version installed in the stack's database (``pg_extension``; "" when
    not installed)."""
    settings: Mapping[str, str]
    """The stack's effective non-secret settings now (config merged with defaults)."""
    image_digest: str = ""
    partial_failures: tuple[str, ...] = ()
    """Versions of non-transactional migrations the database records as failed: the statements
    before the failing one committed, so the data may have changed even though the version did
    not move."""
    """The database image's repo digest the failed deploy ran (the Verification's ``dbImage``
    in state; "" when unknown, e.g. an image with no registry digest)."""


@dataclass(frozen=True, kw_only=True)
class RollbackPlan:
    config: tuple[tuple[str, str, str], ...]
    """(key, now, back to) for every setting to set back."""
    restore_reason: str = ""
    """Why the pre-change backup must be restored first ('' when not)."""
    new_migrations: tuple[str, ...] = ()
    """Migration files in the checkout the last good deploy did not run."""
    changed_migrations: tuple[str, ...] = ()
    """Migration files in the checkout whose checksum differs from the one the last good deploy
    recorded under the same name."""
    last_good: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nothing_to_do(self) -> bool:
        return (
            not self.config
            and not self.restore_reason
            and not self.new_migrations
            and not self.changed_migrations
        )

    def render(self, stack: str, backup: str | None) -> str:
        good = self.last_good
        lines = [
            f"rollback of stack {stack} to the deploy verified at {good.get('verifiedAt', '?')} "
            f"(schema version {good.get('schemaVersion') or '-'}, TimescaleDB "
            f"{good.get('extensionVersion') or '-'}, image {good.get('dbImage') or '-'}):"
        ]
        if self.restore_reason:
            which = backup or f"(choose one: ./ms5 restore {stack})"
            lines.append(f"  1. restore the pre-change backup {which}: {self.restore_reason}")
        for key, now, back in self.config:
            why = " (so the verification runs again)" if key == RUN_ID_KEY else ""
            if (
                key == "dbImage"
                and _digest_of(back)
                and _digest_of(back) == _digest_of(good.get("dbImage"))
            ):
                why = " (pinned to the digest the last good deploy ran)"
            lines.append(f"  - ms5:{key}: {now or '(empty)'} -> {back}{why}")
        if self.new_migrations:
            lines.append(
                "  ! migration files the last good deploy did not run: "
                + ", ".join(self.new_migrations)
            )
        if self.changed_migrations:
            lines.append(
                "  ! migration files changed since the last good deploy ran them: "
                + ", ".join(self.changed_migrations)
            )
        if self.nothing_to_do:
            lines.append("  nothing differs: the stack is at its last good deploy")
        else:
            lines.append(f"  then: pulumi up --stack {stack} (verification runs again)")
        return "\n".join(lines)


def rollback_run_id(last_good: Mapping[str, Any]) -> str:
    """The ``ms5:verificationRunId`` of a rollback to ``last_good``: named after the deploy it
    returns to (``rollback-20261201T200000Z``), so the plan stays a function of the state."""
    stamp = "".join(ch for ch in str(last_good.get("verifiedAt") or "") if ch.isalnum())
    return f"rollback-{stamp or 'unknown'}"


def plan_rollback(state: StackState, migration_files: Mapping[str, str]) -> RollbackPlan:
    """What to do to return to ``state.last_good`` (pure)."""
    good = state.last_good
    if not good:
        raise RollbackError(
            "no last good deploy recorded (the Verification resource has no lastGood output): "
            "nothing verified green on this stack yet, so there is nothing to roll back to"
        )
    wanted = good.get("settings") or {}
    changes = []
    for key in sorted(set(wanted) | set(state.settings)):
        now = state.settings.get(key)
        back = wanted.get(key)
        if key != RUN_ID_KEY and back is not None and now != back:
            changes.append((key, str(now), str(back)))
    reasons = []
    if not same_version(str(good.get("schemaVersion") or ""), state.schema_version):
        reasons.append(
            f"the failed deploy migrated the schema from version {good.get('schemaVersion')} to "
            f"{state.schema_version}"
        )
    if str(good.get("extensionVersion") or "") != state.extension_version:
        reasons.append(
            f"the failed deploy updated TimescaleDB from {good.get('extensionVersion')} to "
            f"{state.extension_version}"
        )
    record = str(good.get("schemaVersion") or "")
    partial = sorted(v for v in state.partial_failures if _newer(v, record))
    if partial:
        reasons.append(
            "the failed deploy ran non-transactional migration(s) "
            + ", ".join(partial)
            + " that failed part-way: their statements before the failure committed"
        )
    pinned = _pinned_image(good, state, {key: back for key, _now, back in changes})
    if pinned is not None:
        changes = [c for c in changes if c[0] != "dbImage"]
        changes.append(("dbImage", str(state.settings.get("dbImage")), pinned))
        changes.sort()
    recorded = good.get("migrationFiles") or {}
    new = tuple(sorted(set(migration_files) - set(recorded)))
    changed = tuple(
        sorted(
            name
            for name, digest in migration_files.items()
            if name in recorded and _recorded_checksum(recorded[name]) != digest
        )
    )
    run_id = rollback_run_id(good)
    now_run_id = state.settings.get(RUN_ID_KEY, "")
    if (changes or reasons or new or changed) and now_run_id != run_id:
        changes.append((RUN_ID_KEY, str(now_run_id), run_id))
    return RollbackPlan(
        config=tuple(changes),
        restore_reason="; ".join(reasons),
        new_migrations=new,
        changed_migrations=changed,
        last_good=good,
    )


def same_version(recorded: str, now: str) -> bool:
    """Whether two schema versions are the same migration version, compared the way the
    migrations package orders them (``"7"`` and ``"7.0"`` are one version); text that is no
    version (e.g. "" for none) only equals itself."""
    from ms5_components.migrations.plan import version_key

    try:
        return version_key(recorded) == version_key(now)
    except ValueError:
        return recorded == now


def _newer(version: str, record: str) -> bool:
    """Whether migration ``version`` comes after the record's schema version (unparsable
    versions count as newer: the safe side is a restore)."""
    from ms5_components.migrations.plan import version_key

    if not record:
        return True
    try:
        return version_key(version) > version_key(record)
    except ValueError:
        return True


def _recorded_checksum(entry: object) -> str:
    """The checksum of one ``migrationFiles`` entry (a checksum, or an object holding one)."""
    if isinstance(entry, Mapping):
        return str(entry.get("checksum") or "")
    return str(entry or "")


@dataclass(frozen=True, kw_only=True)
class BackupVersions:
    """What a backup's manifest says about the data it holds."""

    backup: str
    schema_version: str
    """The newest applied migration version when it was taken ("" when none)."""
    extension_version: str
    """Its TimescaleDB version ("" when the extension was not installed)."""


def backup_problems(last_good: Mapping[str, Any], backup: BackupVersions) -> list[str]:
    """Why ``backup`` does not hold the last good deploy's data (empty: it does), each naming
    the backup and both versions (pure). The TimescaleDB version is compared when the record
    names one."""
    problems = []
    schema = str(last_good.get("schemaVersion") or "")
    if not same_version(schema, backup.schema_version):
        problems.append(
            f"backup {backup.backup} is at schema version {backup.schema_version or '(none)'}, "
            f"the last good deploy at {schema or '(none)'}"
        )
    extension = str(last_good.get("extensionVersion") or "")
    if extension and backup.extension_version != extension:
        problems.append(
            f"backup {backup.backup} has TimescaleDB {backup.extension_version or '(none)'}, "
            f"the last good deploy ran {extension}"
        )
    return problems


def _digest_of(reference: object) -> str:
    """The ``sha256:`` digest of ``repo[:tag]@sha256:<hex>`` ("" when it names none)."""
    _, at, digest = str(reference or "").rpartition("@")
    return digest if at and digest.startswith("sha256:") else ""


def _pinned_image(
    good: Mapping[str, Any], state: StackState, back: Mapping[str, str]
) -> str | None:
    """``ms5:dbImage`` pinned to the last good deploy's digest, when the failed deploy ran
    another digest and the setting the plan leaves would not bring the good one back (a tag
    that moved: the setting is unchanged but the registry serves a new image under it)."""
    from ms5_components.settings import parse_image

    good_digest = _digest_of(good.get("dbImage"))
    now_digest = _digest_of(state.image_digest)
    # Either digest unknown (e.g. an image with no registry digest): nothing says they differ.
    if not good_digest or not now_digest or good_digest == now_digest:
        return None
    setting = back.get("dbImage", str(state.settings.get("dbImage") or ""))
    try:
        ref = parse_image(setting)
    except ValueError:
        return None  # settings validation names it on the rollback's `pulumi up`
    if ref.digest == good_digest:
        return None
    return f"{ref.repository}:{ref.tag}@{good_digest}"


# --------------------------------------------------------------------------------------------------
# Reading the stack and doing it (the Pulumi CLI and the restore command)
# --------------------------------------------------------------------------------------------------

Runner = Callable[[Sequence[str]], str]


@dataclass(frozen=True, kw_only=True)
class DatabaseVersions:
    """The data's shape as the stack's database says it (the truth after any failure)."""

    schema_version: str
    """The newest applied version in ``ms5_meta.schema_history`` ("" when none)."""
    extension_version: str
    """``extversion`` of TimescaleDB in ``pg_extension`` ("" when not installed)."""
    partial_failures: tuple[str, ...] = ()
    """Versions of non-transactional migrations recorded as ``failed`` (each may have committed
    some of its statements)."""


class StackDatabase(Protocol):
    """What the rollback reads from the stack's database and its backup volume."""

    def describe(self) -> str:
        """Where the database is, for messages (no secrets)."""
        ...

    def versions(self) -> DatabaseVersions: ...

    def backup_versions(self, backup: str) -> BackupVersions:
        """The versions in ``backup``'s manifest (raises when it cannot be read)."""
        ...


@dataclass(frozen=True, kw_only=True)
class TargetDatabase:
    """A database reached like ``./ms5 restore`` reaches it: its tools run next to the server
    through the target's executor (production: ``docker exec`` into the database container)."""

    target: Target

    def describe(self) -> str:
        return f"database {self.target.database}, {self.target.executor.describe()}"

    def versions(self) -> DatabaseVersions:
        from psycopg import sql

        from ms5_components.backups.restore import psql
        from ms5_components.migrations.extension import EXTENSION
        from ms5_components.migrations.plan import APPLIED_OUTCOMES, version_key
        from ms5_components.migrations.runner import HISTORY_SCHEMA, HISTORY_TABLE

        table = sql.Identifier(HISTORY_SCHEMA, HISTORY_TABLE)
        first = sql.SQL(
            "SELECT json_build_object('history', to_regclass({name}) IS NOT NULL, 'extension', "
            "(SELECT extversion FROM pg_catalog.pg_extension WHERE extname = {ext}))"
        ).format(name=sql.Literal(table.as_string(None)), ext=sql.Literal(EXTENSION))
        found = json.loads(psql(self.target, self.target.database, first.as_string(None)))
        versions: list[str] = []
        partial: list[str] = []
        if found["history"]:
            history = sql.SQL(
                "SELECT json_build_object("
                "'applied', coalesce(json_agg(version) FILTER (WHERE outcome IN ({ok})), '[]'), "
                "'partial', coalesce(json_agg(version) FILTER "
                "(WHERE outcome = 'failed' AND NOT transactional), '[]')) FROM {table}"
            ).format(
                table=table,
                ok=sql.SQL(", ").join(sql.Literal(o) for o in sorted(APPLIED_OUTCOMES)),
            )
            rows = json.loads(psql(self.target, self.target.database, history.as_string(None)))
            versions, partial = rows["applied"], rows["partial"]
        return DatabaseVersions(
            schema_version=max(versions, key=version_key) if versions else "",
            partial_failures=tuple(sorted(str(v) for v in partial)),
            extension_version=str(found["extension"] or ""),
        )

    def backup_versions(self, backup: str) -> BackupVersions:
        from ms5_components.backups.runner import read_manifest

        meta = read_manifest(self.target, backup).metadata
        return BackupVersions(
            backup=backup,
            schema_version=meta.schema_version or "",
            extension_version=meta.timescaledb_version or "",
        )


@dataclass(frozen=True, kw_only=True)
class StackFileDatabase:
    """The stack's database as ``./ms5 restore`` finds it: from ``Pulumi.<stack>.yaml`` in the
    project directory (the Docker engine, the container, the database name)."""

    stack: str
    project_dir: Path

    def _database(self) -> TargetDatabase:
        from ms5_components.backups.restore import stack_target

        target, _image = stack_target(self.project_dir, self.stack)
        return TargetDatabase(target=target)

    def describe(self) -> str:
        try:
            return self._database().describe()
        except Ms5Error:
            return f"the database of stack {self.stack}"

    def versions(self) -> DatabaseVersions:
        return self._database().versions()

    def backup_versions(self, backup: str) -> BackupVersions:
        return self._database().backup_versions(backup)


def _run(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RollbackError(f"{argv[0]} is not installed (needed for the rollback)") from None
    if done.returncode != 0:
        raise RollbackError(
            f"`{' '.join(argv[:4])} ...` failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout


def read_state(stack: str, run: Runner = _run, *, database: StackDatabase) -> StackState:
    """The Verification's ``lastGood`` from ``pulumi stack export``; the effective settings from
    ``pulumi config --json`` (secrets never read); the schema and TimescaleDB versions from
    ``database``.

    A database that cannot be read stops the rollback: there is no fallback to the
    MigrationSet's versions in state, which a deploy that failed part-way leaves behind what its
    migrations committed, so a fallback could skip the restore the data needs."""
    from ms5_components.settings import load_settings
    from ms5_components.verification.provider import public_settings

    deployment = json.loads(run(["pulumi", "stack", "export", "--stack", stack]))
    resources = (deployment.get("deployment") or {}).get("resources") or []
    last_good = None
    image_digest = ""
    for resource in resources:
        outputs = resource.get("outputs") or {}
        if resource.get("type") == VERIFICATION:
            last_good = outputs.get("lastGood") or None
            image_digest = str(outputs.get("dbImage") or "")
    try:
        versions = database.versions()
    except Ms5Error as exc:
        raise RollbackError(
            f"stack {stack}: cannot read the applied schema version and the TimescaleDB version "
            f"from {database.describe()}: {exc}. The rollback decides from the database whether "
            "the pre-change backup must be restored, never from the Pulumi state (a deploy that "
            "failed part-way leaves an older version there). Start the database container (or "
            f"fix ms5:dockerHost in Pulumi.{stack}.yaml), check `./ms5 restore {stack}` can list "
            "the backups, then run the rollback again"
        ) from exc
    config = json.loads(run(["pulumi", "config", "--stack", stack, "--json"]))
    raw = {
        key: (
            value.get("value")
            if isinstance(value.get("value"), str)
            else json.dumps(value.get("value"))
        )
        for key, value in config.items()
        if isinstance(value, Mapping) and not value.get("secret") and value.get("value") is not None
    }
    settings = load_settings({k: str(v) for k, v in raw.items()}, stack=stack)
    return StackState(
        last_good=last_good,
        schema_version=versions.schema_version,
        extension_version=versions.extension_version,
        partial_failures=versions.partial_failures,
        settings=public_settings(settings),
        image_digest=image_digest,
    )


def execute(
    stack: str,
    plan: RollbackPlan,
    *,
    backup: str | None,
    restore_command: Sequence[str] | None,
    run: Runner = _run,
    up: bool = True,
) -> list[str]:
    """Do the plan; returns the commands run. Refuses before the first command when the plan
    cannot be completed (new migration files, a restore without a backup or a command)."""
    if plan.new_migrations:
        raise RollbackError(
            "the checkout has migration files the last good deploy did not run ("
            + ", ".join(plan.new_migrations)
            + "): `pulumi up` would apply them again. Check out the commit of the last good "
            "deploy (or move those files aside), then run the rollback again"
        )
    if plan.changed_migrations:
        raise RollbackError(
            "the checkout has migration files whose content changed since the last good deploy "
            "ran them (" + ", ".join(plan.changed_migrations) + "): their checksums differ from "
            "the recorded ones, so `pulumi up` would refuse them as drift. Check out the commit "
            "of the last good deploy (or put those files' content back), then run the rollback "
            "again"
        )
    if plan.restore_reason and not backup:
        raise RollbackError(
            f"{plan.restore_reason}: the pre-change backup must be restored first. List the "
            f"backups with `./ms5 restore {stack}` and pass the one taken before the failed "
            f"deploy: `./ms5 rollback {stack} --backup <name>`"
        )
    if plan.restore_reason and restore_command is None:
        raise RollbackError(
            f"{plan.restore_reason}: the pre-change backup must be restored first, but this "
            "checkout has no restore command (the backups capability: "
            "ms5_components.backups.restore, `./ms5 restore`). Restore the backup by hand with "
            "pg_restore into an empty database, then run the rollback again"
        )
    done: list[str] = []
    if plan.restore_reason and restore_command is not None and backup:
        argv = [*restore_command, stack, backup, "--force"]
        run(argv)
        done.append(" ".join(argv))
    for key, _now, back in plan.config:
        argv = ["pulumi", "config", "set", "--stack", stack, f"{NAMESPACE}:{key}", back]
        run(argv)
        done.append(" ".join(argv))
    if up and not plan.nothing_to_do:
        argv = ["pulumi", "up", "--stack", stack, "--yes", "--skip-preview"]
        run(argv)
        done.append(" ".join(argv))
    return done


def next_migrations_dir(state: StackState, project_dir: Path | None = None) -> Path:
    """The migrations directory the rollback's ``pulumi up`` will read: ``ms5:migrationsDir`` as
    the plan leaves it (the last good deploy's value when it is set back, else the stack's
    value now), resolved against the project directory like the program resolves it."""
    from ms5_components.migrations import resolve_migrations_dir

    good = (state.last_good or {}).get("settings") or {}
    raw = good.get("migrationsDir")
    if raw is None:
        raw = state.settings.get("migrationsDir", "")
    return resolve_migrations_dir(str(raw), project_dir)


def default_restore_command() -> list[str] | None:
    """The restore command of the backups capability, when this checkout has it."""
    import importlib.util

    if importlib.util.find_spec("ms5_components.backups.restore") is None:
        return None
    return [sys.executable, "-m", "ms5_components.backups.restore"]


def check_backup(
    stack: str, plan: RollbackPlan, backup: str, database: StackDatabase
) -> BackupVersions:
    """``backup``'s manifest read and compared with the record; refuses a backup that does not
    hold the last good deploy's data, before anything runs."""
    try:
        versions = database.backup_versions(backup)
    except Ms5Error as exc:
        raise RollbackError(
            f"stack {stack}: cannot read the manifest of backup {backup} ({exc}). Pick a "
            f"verified backup from `./ms5 restore {stack}` and pass it with --backup"
        ) from exc
    problems = backup_problems(plan.last_good, versions)
    if problems:
        good = plan.last_good
        raise RollbackError(
            f"backup {backup} does not hold the data of the last good deploy (verified at "
            f"{good.get('verifiedAt', '?')}): "
            + "; ".join(problems)
            + f". Pick the backup taken before the failed deploy's changes, at schema version "
            f"{good.get('schemaVersion') or '(none)'} and TimescaleDB "
            f"{good.get('extensionVersion') or '-'} (`./ms5 restore {stack}` lists each backup's "
            "versions), and pass it with --backup"
        )
    return versions


def main(
    argv: Sequence[str] | None = None,
    *,
    run: Runner = _run,
    database: StackDatabase | None = None,
) -> int:
    """``./ms5 rollback``; ``run`` runs every command (the Pulumi CLI, the restore command);
    ``database`` reads the stack's database and backups (default: found from
    ``Pulumi.<stack>.yaml`` in the working directory, like ``./ms5 restore``)."""
    parser = argparse.ArgumentParser(
        prog="./ms5 rollback", description="Return a stack to its last deploy that verified."
    )
    parser.add_argument("stack")
    parser.add_argument("--backup", help="the pre-change backup to restore (when one is needed)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument(
        "--migrations-dir",
        default="",
        help="the checkout's migrations (default: ms5:migrationsDir as the rollback leaves it)",
    )
    args = parser.parse_args(argv)
    try:
        from ms5_components.migrations.plan import load_directory

        db = database or StackFileDatabase(stack=args.stack, project_dir=Path.cwd())
        state = read_state(args.stack, run, database=db)
        directory = Path(args.migrations_dir) if args.migrations_dir else next_migrations_dir(state)
        files = {m.filename: m.checksum for m in load_directory(directory)}
        plan = plan_rollback(state, files)
        print(plan.render(args.stack, args.backup))
        if plan.restore_reason and args.backup:
            check_backup(args.stack, plan, args.backup, db)
        if args.dry_run or plan.nothing_to_do:
            return 0
        for command in execute(
            args.stack,
            plan,
            backup=args.backup,
            restore_command=default_restore_command(),
            run=run,
        ):
            print(f"done: {command}")
    except Ms5Error as exc:
        print(f"ms5 rollback: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
