"""The project's exception hierarchy: one root, one subclass per domain.

Every message names the key, file, resource or version at fault and the next step; none carries a
secret value.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class ContainerHealthError(Ms5Error):
    """A container did not become healthy in time, or stopped; the container is kept."""


class MigrationError(Ms5Error):
    """A migration could not be planned or applied."""


# ---- migrations: one subclass per failure kind, each carrying the file/version ---------


class MigrationFileError(MigrationError):
    """A migration file (or the directory) is malformed: name, encoding, content, duplicate.

    ``filename`` is the file's base name (or the directory); ``line`` the 1-based line when known.
    """

    def __init__(self, filename: str, message: str, *, line: int | None = None) -> None:
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {message}")
        self.filename = filename
        self.line = line
        self.reason = message


class MigrationFileErrors(MigrationError):
    """Several migration files are wrong at once; all are reported together."""

    def __init__(self, errors: list[MigrationFileError]) -> None:
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{len(errors)} invalid migration file(s):\n{lines}")
        self.errors = errors


@dataclass(frozen=True)
class Drift:
    """An applied migration whose file no longer matches the history."""

    version: str
    filename: str
    recorded: str
    """Checksum recorded in the history table when it was applied."""
    current: str | None
    """Checksum of the file now, or None when the file is gone."""
    kind: str
    """changed | removed | renamed | reappeared."""
    recorded_name: str | None = None

    def describe(self) -> str:
        if self.kind == "removed":
            what = f"{self.filename} (version {self.version}) was applied but its file is gone"
        elif self.kind == "renamed":
            what = (
                f"{self.filename} (version {self.version}) was applied as {self.recorded_name}; "
                "the description in its name changed"
            )
        elif self.kind == "reappeared":
            what = f"{self.filename} (version {self.version}) was retired but its file is back"
        else:
            what = f"{self.filename} (version {self.version}) changed after it was applied"
        current = self.current or "(no file)"
        accept = f"{self.version}:{self.current}" if self.current else self.version
        return (
            f"{what}: recorded sha256 {self.recorded}, file sha256 {current}. Restore the file "
            f"as applied and put the change in a new migration; or, if the change is intended "
            f"and already done in the database, accept it once with "
            f"`pulumi config set --path 'ms5:migrationRepair[0]' {accept}`"
        )


class MigrationDriftError(MigrationError):
    """Applied migrations no longer match their files; nothing was run."""

    def __init__(self, drifts: list[Drift]) -> None:
        lines = "\n".join(f"  - {d.describe()}" for d in drifts)
        super().__init__(
            f"{len(drifts)} applied migration(s) drifted; no migration was run:\n{lines}"
        )
        self.drifts = drifts


class MigrationOrderError(MigrationError):
    """A new migration has a version below one already applied; nothing was run."""

    def __init__(self, filenames: list[str], highest: str) -> None:
        super().__init__(
            f"{', '.join(filenames)}: version below {highest}, which is already applied; "
            f"no migration was run. Rename the file(s) to a version above {highest}"
        )
        self.filenames = filenames
        self.highest = highest


class MigrationConnectError(MigrationError):
    """The database could not be reached (the message never carries the DSN or password)."""


class MigrationLockError(MigrationError):
    """The migration lock (another runner) or a table lock could not be had in time."""

    def __init__(self, message: str, *, filename: str | None = None) -> None:
        super().__init__(f"{filename}: {message}" if filename else message)
        self.filename = filename


class MigrationFailedError(MigrationError):
    """A migration failed; earlier ones stay applied and recorded, this one is not.

    Carries the file, version, line, SQLSTATE and the database's message; ``done`` lists the
    statements a non-transactional migration completed before the failure.
    """

    def __init__(
        self,
        *,
        filename: str,
        version: str,
        line: int | None,
        message: str,
        sqlstate: str | None = None,
        done: tuple[str, ...] = (),
        next_step: str = "",
    ) -> None:
        where = f"{filename}:{line}" if line else filename
        state = f" [SQLSTATE {sqlstate}]" if sqlstate else ""
        text = f"{where}: migration {version} failed{state}: {message}"
        if done:
            text += "\n  done before the failure (committed, not undone):\n" + "\n".join(
                f"    - {d}" for d in done
            )
        if next_step:
            text += f"\n  next: {next_step}"
        super().__init__(text)
        self.filename = filename
        self.version = version
        self.line = line
        self.sqlstate = sqlstate
        self.db_message = message
        self.done = done


class ExtensionUpgradeError(MigrationError):
    """``ALTER EXTENSION ... UPDATE`` failed, or left a version other than the available one."""

    def __init__(self, database: str, message: str) -> None:
        super().__init__(f"database {database}: {message}")
        self.database = database


class MonitoringError(Ms5Error):
    """Monitoring configuration (exporter queries, Prometheus, Grafana) is invalid."""


class RoleError(Ms5Error):
    """A database role cannot log in or its password cannot be brought in line with config."""


# ---- verification and benchmarks -----------------------------------------------------------------


class VerificationError(Ms5Error):
    """The deploy gate found the verification red or the benchmark failing where it gates; the
    message is the per-check report."""


class BenchmarkError(Ms5Error):
    """The benchmark could not run or ran out of its time budget."""


class BenchmarkRunError(BenchmarkError):
    """A benchmark run that started did not complete: an error, its time budget, or its session
    terminated. The Benchmark resource records it as a failed run (it is not raised out of the
    provider). The message is free of secrets (the DSN, password and host are scrubbed).

    ``kind`` is ``error``, ``timeout`` or ``killed``; ``phase`` the phase it stopped in;
    ``scratch_dropped`` whether the run's scratch schema ``scratch_schema`` is gone (if not, the
    next run drops it); ``leftovers`` the scratch schemas of earlier runs this one dropped;
    ``next_step`` what to do, when the cause calls for more than the kind's usual step.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        phase: str,
        scratch_schema: str = "",
        scratch_dropped: bool = True,
        seconds: float = 0.0,
        leftovers: tuple[str, ...] = (),
        next_step: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.phase = phase
        self.scratch_schema = scratch_schema
        self.scratch_dropped = scratch_dropped
        self.seconds = seconds
        self.leftovers = leftovers
        self.next_step = next_step


class RollbackError(Ms5Error):
    """A rollback cannot proceed (no last-good record, a version check refused the restore)."""


class BackupError(Ms5Error):
    """A backup, its verification, retention, a restore drill or a restore failed.

    Nothing unverified is ever published; earlier backups are untouched.
    """
