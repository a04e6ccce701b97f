"""``Backup`` and ``RestoreDrill``: backups before risky changes, and proof they restore.

``Backup`` (``pulumi-python:dynamic/ms5:Backup``) runs before the database container is created
or replaced and before the migrations (both depend on it). Whether a deploy takes a backup is
decided from its inputs alone (:func:`~ms5_components.backups.plan.backup_reasons`): new or
changed migration files, a change of the settings that replace the container (the image
included), a new ``ms5:backupLabel``. ``check`` writes the reasons into the ``plannedBackup``
input, so ``pulumi preview --diff`` shows that a backup will be taken and why, while running
nothing; ``diff`` never compares ``plannedBackup`` itself, so a deploy with nothing to change takes
none. On the first deploy there is no server yet: the outputs record that. With ``mandatory``
(always in production) a failed backup fails the resource, so neither the container change nor
the migrations run; otherwise the failure is recorded in the outputs and logged.

``RestoreDrill`` (``pulumi-python:dynamic/ms5:RestoreDrill``) runs whenever ``Backup`` published a
new backup: it restores it into a scratch database on the same server, compares row, chunk and
continuous-aggregate counts with the manifest, records the restore time, and drops the scratch
database, even on failure.

Both run the backup script next to the server through an executor (:mod:`.executor`); the
machine running Pulumi needs no PostgreSQL tools. Neither deletes anything on destroy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

if TYPE_CHECKING:
    from ms5_components.backups.runner import BackupSettings, Target

PROVIDER_VERSION = "1"
"""Bumped when the providers' behaviour changes, so the change shows as a (no-op) update."""

BACKUP_TYPE = "pulumi-python:dynamic/ms5:Backup"
DRILL_TYPE = "pulumi-python:dynamic/ms5:RestoreDrill"

BACKUP_DIFF_KEYS = (
    "database",
    "executor",
    "backupDir",
    "connection",
    "jobs",
    "compression",
    "verify",
    "keepCount",
    "maxAgeDays",
    "mandatory",
    "lockWaitSeconds",
    "timeoutSeconds",
    "migrations",
    "server",
    "label",
    "pushgatewayUrl",
    "providerVersion",
)
"""Inputs a change of which updates the Backup (only some of them take a backup)."""
_INT_KEYS = ("jobs", "keepCount", "maxAgeDays", "lockWaitSeconds", "timeoutSeconds")
_INT_LIMITS = {
    "jobs": (1, 64),
    "keepCount": (0, 10_000),
    "maxAgeDays": (0, 36_500),
    "lockWaitSeconds": (1, 3600),
    "timeoutSeconds": (60, 604_800),
}


def _is_unknown(value: object) -> bool:
    from pulumi.output import Unknown
    from pulumi.runtime import rpc

    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(_is_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_is_unknown(v) for v in value)
    return False


def _plain(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs without the engine's ``__`` keys, whole numbers back to ints."""
    out = {k: v for k, v in raw.items() if not k.startswith("__")}
    for key in _INT_KEYS:
        if isinstance(out.get(key), float):
            out[key] = int(out[key])
    return out


def _target(props: Mapping[str, Any]) -> Target:
    from ms5_components.backups.executor import from_spec
    from ms5_components.backups.runner import Target

    connection = props.get("connection") or {}
    return Target(
        executor=from_spec(props["executor"]),
        backup_dir=str(props["backupDir"]),
        database=str(props["database"]),
        connection={str(k): str(v) for k, v in connection.items() if k != "bindir"},
        password=str(props.get("password") or ""),
        pg_bindir=str(connection.get("bindir") or ""),
    )


def _settings(props: Mapping[str, Any]) -> BackupSettings:
    from ms5_components.backups.runner import BackupSettings

    return BackupSettings(
        jobs=int(props.get("jobs") or 1),
        compression=str(props.get("compression") or "gzip:6"),
        lock_wait_seconds=int(props.get("lockWaitSeconds") or 60),
        timeout_seconds=int(props.get("timeoutSeconds") or 21_600),
    )


def _check_common(news: Mapping[str, Any], failures: list[CheckFailure]) -> None:
    from ms5_components.backups.executor import check_spec

    database = news.get("database")
    if not _is_unknown(database) and not (isinstance(database, str) and database):
        failures.append(CheckFailure("database", f"expected a database name, got {database!r}"))
    executor = news.get("executor")
    if not _is_unknown(executor):
        problem = check_spec(executor)
        if problem:
            failures.append(CheckFailure("executor", problem))
    backup_dir = news.get("backupDir")
    if not _is_unknown(backup_dir) and not (
        isinstance(backup_dir, str) and backup_dir.startswith("/")
    ):
        failures.append(CheckFailure("backupDir", f"expected an absolute path, got {backup_dir!r}"))
    for key, (lo, hi) in _INT_LIMITS.items():
        value = news.get(key)
        if value is None or _is_unknown(value):
            continue
        if not isinstance(value, (int, float)) or int(value) != value or not lo <= value <= hi:
            failures.append(
                CheckFailure(key, f"expected a whole number from {lo} to {hi}, got {value!r}")
            )


def _push(url: str, job: str, database: str, samples: Sequence[tuple[Any, float]]) -> None:
    """Replace the job's group on the Pushgateway; a failure is logged, never fatal."""
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from ms5_components.backups.script import exposition

    if not url:
        return
    body = exposition([(metric, repr(float(value))) for metric, value in samples])
    target = (
        f"{url.rstrip('/')}/metrics/job/{quote(job, safe='')}/database/{quote(database, safe='')}"
    )
    request = urllib.request.Request(target, data=body.encode(), method="PUT")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass
    except (urllib.error.URLError, OSError) as exc:
        pulumi.log.warn(f"backup results not pushed to {url}: {exc}")


class BackupProvider(ResourceProvider):
    """Dynamic provider of :class:`Backup`. Holds no state; every call runs anew."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Validate; write why this deploy would back up into ``plannedBackup`` (no I/O)."""
        from ms5_components.backups.plan import backup_reasons

        failures: list[CheckFailure] = []
        _check_common(news, failures)
        for key in ("migrations", "server"):
            value = news.get(key)
            if value is not None and not _is_unknown(value) and not isinstance(value, Mapping):
                failures.append(CheckFailure(key, "expected an object"))
        checked = _plain(news)
        if failures or any(_is_unknown(news.get(k)) for k in ("migrations", "server", "label")):
            checked["plannedBackup"] = []
        else:
            old = _plain(olds) if olds else {}
            planned = backup_reasons(old, checked)
            checked["plannedBackup"] = planned if _changes(old, checked) or not old else []
        return CheckResult(checked, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Meaningful inputs only (never ``plannedBackup``, never the provider); never replaces."""
        return DiffResult(changes=_changes(olds, news), replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        """First deploy: nothing to back up when there is no server yet (recorded as such);
        on an existing server (the resource added later), a backup."""
        plain = _plain(props)
        outs = _run_backup(plain, {}, ["first deploy of the Backup resource"])
        return CreateResult(id_=f"ms5-backup-{plain['database']}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Back up when a reason applies; then retention. Returns the full outputs."""
        from ms5_components.backups.plan import backup_reasons

        plain = _plain(news)
        return UpdateResult(outs=_run_backup(plain, olds, backup_reasons(olds, plain)))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Deletes nothing: the backups stay on the (protected) backup volume."""


def _changes(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    return any(_is_unknown(news.get(k)) or olds.get(k) != news.get(k) for k in BACKUP_DIFF_KEYS)


def _run_backup(
    props: dict[str, Any], olds: Mapping[str, Any], reasons: Sequence[str]
) -> dict[str, Any]:
    import time

    from ms5_components.backups import runner
    from ms5_components.errors import BackupError
    from ms5_components.monitoring import metrics

    outs = {k: v for k, v in props.items() if k != "password"}
    outs["plannedBackup"] = []
    # Carried over from the last run unless this one changes them.
    for key in ("lastBackup", "lastBackupAt", "lastSummary"):
        outs[key] = olds.get(key, "" if key != "lastSummary" else {})
    outs.update(lastReasons=list(reasons), pruned=[], swept=[], lastError="")
    outs.setdefault("backups", list(olds.get("backups") or []))
    target = _target(props)
    database = target.database
    if not reasons:
        outs["lastResult"] = "no backup needed"
        outs["backups"] = list(olds.get("backups") or [])
        return outs
    try:
        if not target.executor.server_exists():
            outs["lastResult"] = "no server yet (first deploy): nothing to back up"
            return outs
        outcome = runner.take_backup(
            target,
            _settings(props),
            label=str(props.get("label") or ""),
            reason="; ".join(reasons),
            verify=bool(props.get("verify", True)),
        )
        outs["lastBackup"] = outcome.name
        outs["lastBackupAt"] = outcome.manifest.finished_at
        outs["lastSummary"] = runner.summary(outcome)
        outs["swept"] = list(outcome.swept)
        outs["lastResult"] = "published and verified"
        _push(
            str(props.get("pushgatewayUrl") or ""),
            metrics.PUSH_JOB_BACKUP,
            database,
            [
                (metrics.BACKUP_LAST_SUCCESS, float(outcome.manifest.finished_epoch)),
                (metrics.BACKUP_LAST_RUN_SUCCESS, 1.0),
                (metrics.BACKUP_SIZE, float(outcome.manifest.size_bytes)),
                (metrics.BACKUP_DURATION, outcome.duration_seconds),
            ],
        )
        retention = runner.apply_retention(
            target,
            keep_count=int(props.get("keepCount") or 0),
            max_age_days=int(props.get("maxAgeDays") or 0),
            now=int(time.time()),
        )
        outs["pruned"] = list(retention.removed)
        outs["backups"] = runner.names(runner.list_backups(target))
    except BackupError as exc:
        message = f"Backup {database}: {exc}"
        if props.get("mandatory", True):
            raise BackupError(
                f"{message}. The change that needed this backup was not made; fix the cause and "
                "run `pulumi up` again (earlier backups are untouched)"
            ) from None
        pulumi.log.warn(f"{message} (ms5:backupMandatory is false: the deploy continues)")
        outs["lastResult"] = "failed"
        outs["lastError"] = str(exc)
        _push(
            str(props.get("pushgatewayUrl") or ""),
            metrics.PUSH_JOB_BACKUP,
            database,
            [(metrics.BACKUP_LAST_RUN_SUCCESS, 0.0)],
        )
    return outs


# --------------------------------------------------------------------------------------------------
# Restore drill
# --------------------------------------------------------------------------------------------------

DRILL_DIFF_KEYS = (
    "database",
    "executor",
    "backupDir",
    "connection",
    "jobs",
    "timeoutSeconds",
    "backup",
    "enabled",
    "providerVersion",
)


class RestoreDrillProvider(ResourceProvider):
    """Dynamic provider of :class:`RestoreDrill`."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        _check_common(news, failures)
        return CheckResult(_plain(news), failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = any(
            _is_unknown(news.get(k)) or olds.get(k) != news.get(k) for k in DRILL_DIFF_KEYS
        )
        return DiffResult(changes=changed, replaces=[], stables=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        plain = _plain(props)
        return CreateResult(id_=f"ms5-restore-drill-{plain['database']}", outs=_drill(plain, {}))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_drill(_plain(news), olds))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Deletes nothing (a drill's scratch database never outlives the drill)."""


def _drill(props: dict[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
    import time

    from ms5_components.backups import runner
    from ms5_components.errors import BackupError
    from ms5_components.monitoring import metrics

    outs = {k: v for k, v in props.items() if k != "password"}
    for key, default in (("drilled", ""), ("rtoSeconds", 0.0), ("drilledAt", "")):
        outs[key] = olds.get(key, default)
    outs["mismatches"] = []
    backup = str(props.get("backup") or "")
    if not props.get("enabled", True):
        outs["lastResult"] = "disabled (ms5:restoreDrillAfterBackup is false)"
        return outs
    if not backup:
        outs["lastResult"] = "no backup to drill yet"
        return outs
    target = _target(props)
    url = str(props.get("pushgatewayUrl") or "")
    outcome = runner.restore_drill(target, _settings(props), backup)
    if not outcome.ok:
        _push(
            url,
            metrics.PUSH_JOB_RESTORE_DRILL,
            target.database,
            [(metrics.RESTORE_DRILL_LAST_RUN_SUCCESS, 0.0)],
        )
        raise BackupError(
            f"RestoreDrill {target.database}: backup {backup} restored differently from its "
            f"manifest: {'; '.join(outcome.mismatches[:10])}. Do not rely on this backup; take "
            "a new one (change ms5:backupLabel) and investigate"
        )
    outs.update(
        drilled=outcome.backup,
        rtoSeconds=outcome.rto_seconds,
        drilledAt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        lastResult="restored and matched the manifest",
    )
    _push(
        url,
        metrics.PUSH_JOB_RESTORE_DRILL,
        target.database,
        [
            (metrics.RESTORE_DRILL_LAST_SUCCESS, float(int(time.time()))),
            (metrics.RESTORE_DRILL_LAST_RUN_SUCCESS, 1.0),
            (metrics.RESTORE_DRILL_DURATION, outcome.rto_seconds),
        ],
    )
    return outs


# --------------------------------------------------------------------------------------------------
# The resources
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BackupArgs:
    """Inputs of :class:`Backup`. None replaces the resource."""

    database: pulumi.Input[str]
    """Database backed up (one backup directory per database name)."""
    executor: Mapping[str, str]
    """Where the script runs (:func:`~ms5_components.backups.executor.from_spec`)."""
    backup_dir: str
    """The backup volume's mount path, as the executor sees it."""
    connection: Mapping[str, str]
    """libpq variables next to the server (PGHOST, PGPORT, PGUSER; ``bindir`` optional)."""
    migrations: Mapping[str, str]
    """Migration file name -> sha256: new or changed files take a backup."""
    server: Mapping[str, object]
    """Settings that replace the database container (the image included): a change takes a
    backup before the container is replaced."""
    label: str = ""
    """``ms5:backupLabel``: a new value takes a backup on demand."""
    jobs: int = 2
    compression: str = "gzip:6"
    verify: bool = True
    """Re-verify every published backup in Python (checksums listing against the manifest)."""
    keep_count: int = 7
    max_age_days: int = 30
    mandatory: bool = True
    """A failed backup fails the deploy (the change it precedes does not run)."""
    lock_wait_seconds: int = 60
    timeout_seconds: int = 21_600
    pushgateway_url: str = ""
    """Where results are pushed from the Pulumi host ("" = nowhere)."""
    password: pulumi.Input[str] | None = None
    """PGPASSWORD for the connection next to the server, when it needs one (secret)."""


class Backup(pulumi.dynamic.Resource, module="ms5", name="Backup"):
    """A verified backup before every risky change (see the module docstring)."""

    lastBackup: pulumi.Output[str]  # noqa: N815 - the provider's output name
    """Name of the newest backup this resource published ("" before any)."""
    lastResult: pulumi.Output[str]  # noqa: N815
    """What the last run did (published and verified / no backup needed / no server yet ...)."""
    lastReasons: pulumi.Output[list[str]]  # noqa: N815
    """Why the last run backed up."""
    backups: pulumi.Output[list[str]]
    """Verified backups on the volume after retention."""
    pruned: pulumi.Output[list[str]]
    """Backups retention removed in the last run."""

    def __init__(
        self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {
            "database": args.database,
            "executor": dict(sorted(args.executor.items())),
            "backupDir": args.backup_dir,
            "connection": dict(sorted(args.connection.items())),
            "migrations": dict(sorted(args.migrations.items())),
            "server": dict(sorted(args.server.items())),
            "label": args.label,
            "jobs": args.jobs,
            "compression": args.compression,
            "verify": args.verify,
            "keepCount": args.keep_count,
            "maxAgeDays": args.max_age_days,
            "mandatory": args.mandatory,
            "lockWaitSeconds": args.lock_wait_seconds,
            "timeoutSeconds": args.timeout_seconds,
            "pushgatewayUrl": args.pushgateway_url,
            "providerVersion": PROVIDER_VERSION,
            "password": pulumi.Output.secret(args.password if args.password is not None else ""),
            "plannedBackup": None,
            "lastBackup": None,
            "lastBackupAt": None,
            "lastResult": None,
            "lastReasons": None,
            "lastSummary": None,
            "lastError": None,
            "backups": None,
            "pruned": None,
            "swept": None,
        }
        super().__init__(
            BackupProvider(),
            name,
            props,
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["password"])
            ),
        )


@dataclass(frozen=True, kw_only=True)
class RestoreDrillArgs:
    """Inputs of :class:`RestoreDrill`."""

    database: pulumi.Input[str]
    executor: Mapping[str, str]
    backup_dir: str
    connection: Mapping[str, str]
    backup: pulumi.Input[str]
    """The backup to drill (``Backup.lastBackup``): a new one runs the drill."""
    enabled: bool = True
    """``ms5:restoreDrillAfterBackup``."""
    jobs: int = 2
    timeout_seconds: int = 21_600
    pushgateway_url: str = ""
    password: pulumi.Input[str] | None = None


class RestoreDrill(pulumi.dynamic.Resource, module="ms5", name="RestoreDrill"):
    """Restores each new backup into a scratch database and compares it with its manifest."""

    drilled: pulumi.Output[str]
    """The backup the last successful drill restored."""
    rtoSeconds: pulumi.Output[float]  # noqa: N815
    """Restore time of the last drill (create, restore, post-restore)."""
    lastResult: pulumi.Output[str]  # noqa: N815

    def __init__(
        self, name: str, args: RestoreDrillArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {
            "database": args.database,
            "executor": dict(sorted(args.executor.items())),
            "backupDir": args.backup_dir,
            "connection": dict(sorted(args.connection.items())),
            "backup": args.backup,
            "enabled": args.enabled,
            "jobs": args.jobs,
            "timeoutSeconds": args.timeout_seconds,
            "pushgatewayUrl": args.pushgateway_url,
            "providerVersion": PROVIDER_VERSION,
            "password": pulumi.Output.secret(args.password if args.password is not None else ""),
            "drilled": None,
            "rtoSeconds": None,
            "drilledAt": None,
            "mismatches": None,
            "lastResult": None,
        }
        super().__init__(
            RestoreDrillProvider(),
            name,
            props,
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["password"])
            ),
        )
