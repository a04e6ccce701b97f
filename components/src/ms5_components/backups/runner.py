"""Runs the backup script next to the server (through an executor) and checks what it did.

Every result the script reports is re-checked in Python: the manifest is parsed and validated
(:func:`~ms5_components.backups.manifest.parse_manifest`) and compared with a fresh checksum
listing of the files; retention is planned in Python (:func:`~ms5_components.backups.plan.
plan_retention`) and only carried out by the script.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ms5_components.backups.executor import Executor
from ms5_components.backups.manifest import (
    Manifest,
    ManifestError,
    parse_listing,
    parse_manifest,
    verify_files,
)
from ms5_components.backups.plan import (
    BackupEntry,
    RetentionPlan,
    parse_inventory,
    plan_retention,
)
from ms5_components.backups.script import RESULT_PREFIX, render_script
from ms5_components.errors import BackupError


@dataclass(frozen=True, kw_only=True)
class BackupSettings:
    """How backups are taken (``ms5:backup*`` settings)."""

    jobs: int = 2
    """pg_dump/pg_restore ``--jobs``."""
    compression: str = "gzip:6"
    """pg_dump ``--compress`` (``gzip:N``, ``lz4``, ``zstd:N`` or ``none``)."""
    lock_wait_seconds: int = 60
    """Longest wait for a table lock (pg_dump ``--lock-wait-timeout``, ``lock_timeout`` of the
    counting session) and for another backup's lock."""
    lock_stale_seconds: int = 21_600
    """A backup lock older than this is taken over (its holder died elsewhere)."""
    timeout_seconds: int = 21_600
    """Longest a backup or drill command may run."""


@dataclass(frozen=True, kw_only=True)
class Target:
    """A server and its backup directory, reached through an executor."""

    executor: Executor
    backup_dir: str
    """The backup volume's path as the executor sees it."""
    database: str
    connection: Mapping[str, str] = field(default_factory=dict)
    """libpq variables for the tools next to the server (PGHOST, PGPORT, PGUSER)."""
    password: str = field(default="", repr=False)
    """PGPASSWORD when the local connection needs one (never in argv or messages)."""
    pg_bindir: str = ""
    """Directory of the server's client tools when not on PATH."""


@dataclass(frozen=True, kw_only=True)
class ScriptResult:
    ok: bool
    data: dict[str, Any]
    stdout: str
    stderr: str


def scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def script_env(
    target: Target,
    settings: BackupSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The script's environment for ``target`` (the password included, as PGPASSWORD)."""
    s = settings or BackupSettings()
    env = {
        "MS5_BACKUP_DIR": target.backup_dir,
        "MS5_DATABASE": target.database,
        "MS5_JOBS": str(s.jobs),
        "MS5_COMPRESSION": s.compression,
        "MS5_LOCK_WAIT_SECONDS": str(s.lock_wait_seconds),
        "MS5_LOCK_STALE_SECONDS": str(s.lock_stale_seconds),
        **dict(target.connection),
        **dict(extra_env or {}),
    }
    if target.pg_bindir:
        env["MS5_PG_BINDIR"] = target.pg_bindir
    if target.password:
        env["PGPASSWORD"] = target.password
    return env


def script_argv(command: str, *args: str) -> list[str]:
    return ["sh", "-c", render_script(), "ms5-backup", command, *args]


def run_script(
    target: Target,
    command: str,
    *args: str,
    settings: BackupSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> ScriptResult:
    """Run one script command; its ``MS5-RESULT`` line is parsed into ``data``."""
    s = settings or BackupSettings()
    done = target.executor.run(
        script_argv(command, *args),
        env=script_env(target, s, extra_env),
        timeout=float(s.timeout_seconds),
    )
    stdout = scrub(done.stdout, target.password)
    stderr = scrub(done.stderr, target.password)
    data: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                parsed = json.loads(line[len(RESULT_PREFIX) :])
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                data = parsed
    return ScriptResult(ok=done.returncode == 0, data=data, stdout=stdout, stderr=stderr)


def _error(target: Target, what: str, result: ScriptResult) -> BackupError:
    detail = str(result.data.get("error") or "")
    if not detail:
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else "no output"
    return BackupError(
        f"{what} of database {target.database} ({target.executor.describe()}): {detail}"
    )


@dataclass(frozen=True, kw_only=True)
class BackupOutcome:
    name: str
    manifest: Manifest
    duration_seconds: float
    swept: tuple[str, ...]


def take_backup(
    target: Target,
    settings: BackupSettings,
    *,
    label: str = "",
    reason: str = "",
    verify: bool = True,
) -> BackupOutcome:
    """Take, verify and publish one backup; :class:`BackupError` when anything fails (then
    nothing is published). The script verifies before publishing; ``verify`` adds the Python
    verification of the published files (a failure marks the backup unverified)."""
    result = run_script(
        target,
        "backup",
        settings=settings,
        extra_env={"MS5_LABEL": label, "MS5_REASON": reason or "deploy"},
    )
    if not result.ok or not result.data.get("ok"):
        raise _error(target, "backup", result)
    name = str(result.data["backup"])
    manifest = read_manifest(target, name)
    problems = verify_listing(target, manifest) if verify else []
    if problems:
        run_script(target, "verify", name)  # marks it: never counted as verified
        raise BackupError(
            f"backup {name} of database {target.database}: published but fails the Python "
            f"verification: {'; '.join(problems[:5])}"
        )
    return BackupOutcome(
        name=name,
        manifest=manifest,
        duration_seconds=float(result.data.get("duration_seconds") or 0.0),
        swept=tuple(str(x) for x in result.data.get("swept") or ()),
    )


def read_manifest(target: Target, name: str) -> Manifest:
    result = run_script(target, "manifest", name)
    if not result.ok:
        raise _error(target, f"reading the manifest of {name}", result)
    try:
        return parse_manifest(result.stdout, where=f"{name}/manifest.json")
    except ManifestError as exc:
        raise BackupError(f"backup {name} of database {target.database}: {exc}") from None


def verify_listing(target: Target, manifest: Manifest) -> list[str]:
    """Compare a fresh checksum listing with the manifest (the Python side of verification)."""
    result = run_script(target, "files", manifest.backup)
    if not result.ok:
        return [f"cannot list the files: {result.data.get('error') or result.stderr.strip()}"]
    try:
        return verify_files(manifest, parse_listing(result.stdout))
    except ManifestError as exc:
        return [str(exc)]


def verify_backup(target: Target, name: str, settings: BackupSettings | None = None) -> list[str]:
    """Every reason ``name`` is not restorable (empty: it is): the script's verification
    (checksums, sizes, ``pg_restore --list``) and the Python one."""
    result = run_script(target, "verify", name, settings=settings)
    if not result.ok:
        return [str(result.data.get("error") or result.stderr.strip() or "verification failed")]
    try:
        manifest = read_manifest(target, name)
    except BackupError as exc:
        return [str(exc)]
    return verify_listing(target, manifest)


def list_backups(target: Target) -> list[BackupEntry]:
    result = run_script(target, "list")
    if not result.ok:
        raise _error(target, "listing the backups", result)
    return parse_inventory(result.stdout)


@dataclass(frozen=True, kw_only=True)
class RetentionOutcome:
    plan: RetentionPlan
    removed: tuple[str, ...]
    swept: tuple[str, ...]


def apply_retention(
    target: Target, *, keep_count: int, max_age_days: int, now: int | None = None
) -> RetentionOutcome:
    """Plan retention in Python, then prune with the script (which holds the backup lock and
    refuses to remove the newest verified backup)."""
    plan = plan_retention(
        list_backups(target),
        keep_count=keep_count,
        max_age_days=max_age_days,
        now=int(time.time()) if now is None else now,
    )
    if not plan.prune:
        return RetentionOutcome(plan=plan, removed=(), swept=())
    result = run_script(target, "remove", *plan.prune)
    if not result.ok:
        raise _error(target, "retention", result)
    return RetentionOutcome(
        plan=plan,
        removed=tuple(str(x) for x in result.data.get("removed") or ()),
        swept=(),
    )


@dataclass(frozen=True, kw_only=True)
class DrillOutcome:
    backup: str
    ok: bool
    rto_seconds: float
    mismatches: tuple[str, ...]
    error: str = ""


def restore_drill(
    target: Target, settings: BackupSettings, name: str | None = None
) -> DrillOutcome:
    """Restore ``name`` (default: the newest verified backup) into a scratch database, compare
    it with the manifest and drop it; the outcome says whether it matched."""
    result = run_script(target, "drill", *([name] if name else []), settings=settings)
    data = result.data
    if result.ok and data.get("ok"):
        return DrillOutcome(
            backup=str(data["backup"]),
            ok=True,
            rto_seconds=float(data.get("rto_seconds") or 0.0),
            mismatches=(),
        )
    if "mismatches" in data:
        return DrillOutcome(
            backup=str(data.get("backup") or name or ""),
            ok=False,
            rto_seconds=float(data.get("rto_seconds") or 0.0),
            mismatches=tuple(str(x) for x in data["mismatches"]),
            error="the restored database differs from the manifest",
        )
    raise _error(target, f"restore drill of {name or 'the newest backup'}", result)


def summary(outcome: BackupOutcome) -> dict[str, Any]:
    """Plain outputs describing a published backup."""
    meta = outcome.manifest.metadata
    return {
        "name": outcome.name,
        "sizeBytes": outcome.manifest.size_bytes,
        "durationSeconds": round(outcome.duration_seconds, 3),
        "finishedAt": outcome.manifest.finished_at,
        "postgresVersion": meta.postgres_version,
        "timescaledbVersion": meta.timescaledb_version or "",
        "timescaledbLicense": meta.timescaledb_license or "",
        "schemaVersion": meta.schema_version or "",
        "tables": len(meta.row_counts),
        "rows": sum(meta.row_counts.values()),
        "chunks": sum(meta.chunk_counts.values()),
    }


def names(entries: Sequence[BackupEntry]) -> list[str]:
    return sorted(e.name for e in entries if e.state == "verified")
