"""The online executor: applies a plan to a database with psycopg 3.

One run:

1. connects (``lock_timeout``, ``statement_timeout`` and ``application_name`` travel in the startup
   packet, so they cost no round trip) and reads the history and the extension state in **one
   query**; when nothing is pending, nothing drifted and no repair is asked for, it returns there;
2. brings the TimescaleDB extension up to date in every database when it is behind (or when the
   caller says the image changed): :mod:`ms5_components.migrations.extension`;
3. takes a session-level advisory lock with a bounded wait (polling ``pg_try_advisory_lock`` from
   an idle session, so a waiting runner never holds a snapshot that a ``CREATE INDEX
   CONCURRENTLY`` of the lock holder would wait for: no deadlock), creates the history table on
   first use, re-reads the history under the lock and re-plans (another runner may have finished);
4. stops before any migration SQL on drift or an out-of-order version; applies accepted repairs;
5. applies each pending migration in version order: a transactional one in a single transaction
   together with its history row (so a failure, a lock timeout or a killed connection leaves
   nothing of it); a non-transactional one statement by statement in autocommit, recording
   ``failed`` with what was done when a statement fails. A lock timeout (SQLSTATE 55P03) is retried
   a bounded number of times with backoff; WARNINGs the server raises are recorded in the history
   row (outcome ``applied_with_warnings``).

All SQL of the runner itself is composed with :mod:`psycopg.sql` or bound parameters; migration
files are sent as written. Error messages never carry the DSN, the password or the host.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ms5_components.errors import (
    MigrationConnectError,
    MigrationFailedError,
    MigrationLockError,
)
from ms5_components.migrations.extension import (
    EXTENSION,
    DatabaseUpgrade,
    ExtensionState,
    upgrade_everywhere,
)
from ms5_components.migrations.plan import (
    APPLIED_OUTCOMES,
    HistoryRow,
    Migration,
    Repair,
    RepairEntry,
    RunPlan,
    Statement,
    plan_run,
    version_key,
)
from ms5_components.pg import CLIENT_ENCODING

if TYPE_CHECKING:
    import psycopg

RUNNER_VERSION = "1"
HISTORY_SCHEMA = "ms5_meta"
HISTORY_TABLE = "schema_history"
LOCK_KEY = 0x6D73_355F_6D69_6772  # "ms5_migr": one session-level advisory lock per database
"""Key of the advisory lock every runner takes before changing the schema."""
APPLICATION_NAME = "ms5-migrations"


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """Timeouts and retries of one run (``ms5:migration*`` settings)."""

    lock_timeout_ms: int = 5_000
    """``lock_timeout`` of every statement: a migration never queues long behind a table lock
    (and never blocks the application's queries queued behind it)."""
    statement_timeout_ms: int = 600_000
    """``statement_timeout`` of every statement."""
    lock_retries: int = 3
    """How many times a migration (or statement) that hit ``lock_timeout`` is retried."""
    retry_backoff_seconds: float = 1.0
    """First pause before a retry; doubled each time, capped at 30 s."""
    advisory_lock_wait_seconds: float = 300.0
    """How long to wait for another runner holding the migration lock."""
    connect_timeout_seconds: int = 10


@dataclass(frozen=True, kw_only=True)
class HistoryRecord:
    """One row of the history table after a run."""

    version: str
    description: str
    checksum: str
    outcome: str
    notes: tuple[str, ...] = ()

    def row(self) -> HistoryRow:
        return HistoryRow(self.version, self.description, self.checksum, self.outcome)


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a run found and did."""

    history: tuple[HistoryRecord, ...]
    """Every history row after the run, in version order."""
    applied_now: tuple[str, ...] = ()
    """Versions applied by this run."""
    repaired: tuple[str, ...] = ()
    """Versions re-baselined through ``ms5:migrationRepair``."""
    spent_repairs: tuple[str, ...] = ()
    """Repair entries that matched nothing (remove them from the config)."""
    extension: ExtensionState
    """The TimescaleDB extension in this database after the run."""
    upgrades: tuple[DatabaseUpgrade, ...] = ()
    """Per-database extension check, when one ran."""
    queries: int = 0
    """Round trips the runner made after connecting (1 when nothing was to do)."""

    @property
    def applied_versions(self) -> tuple[str, ...]:
        """Versions applied (with or without warnings), in order."""
        return tuple(r.version for r in self.history if r.outcome in APPLIED_OUTCOMES)

    @property
    def current_version(self) -> str | None:
        versions = self.applied_versions
        return versions[-1] if versions else None

    @property
    def checksums(self) -> dict[str, str]:
        return {r.version: r.checksum for r in self.history if r.outcome != "failed"}

    @property
    def warnings(self) -> dict[str, tuple[str, ...]]:
        """Notes of every row that has some (WARNINGs recorded, repairs, earlier failures)."""
        return {r.version: r.notes for r in self.history if r.notes}


# --------------------------------------------------------------------------------------------------
# Secrets out of messages
# --------------------------------------------------------------------------------------------------


def scrub(message: str, conninfo: str) -> str:
    """Remove the DSN, password, user-info and host of ``conninfo`` from a message."""
    from psycopg.conninfo import conninfo_to_dict

    out = message.replace(conninfo, "<dsn>") if conninfo else message
    out = re.sub(r"postgres(?:ql)?://[^\s'\"]+", "<dsn>", out)
    out = re.sub(r"password\s*=\s*\S+", "password=***", out, flags=re.IGNORECASE)
    try:
        params = conninfo_to_dict(conninfo)
    except Exception:  # noqa: BLE001 - a malformed DSN must not make the message leak it
        return out
    password = params.get("password")
    if password:
        out = out.replace(str(password), "***")
    host = params.get("host") or params.get("hostaddr")
    if host:
        for part in str(host).split(","):
            if part and part not in ("localhost",):
                out = out.replace(part, "<db-host>")
    return out


# --------------------------------------------------------------------------------------------------
# SQL of the runner
# --------------------------------------------------------------------------------------------------


def _history_table() -> Any:
    from psycopg import sql

    return sql.Identifier(HISTORY_SCHEMA, HISTORY_TABLE)


def _state_query(extension: str = EXTENSION) -> Any:
    from psycopg import sql

    return sql.SQL(
        "SELECT (SELECT coalesce(json_agg(json_build_array(h.version, h.description, h.checksum,"
        " h.outcome, h.notes)), '[]'::json) FROM {table} h),"
        " e.extversion,"
        " (SELECT a.default_version FROM pg_catalog.pg_available_extensions a"
        "  WHERE a.name = {ext}),"
        " current_setting('timescaledb.license', true)"
        " FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_extension e ON e.extname = {ext}"
    ).format(table=_history_table(), ext=sql.Literal(extension))


def _create_history_sql() -> list[Any]:
    from psycopg import sql

    table = _history_table()
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(HISTORY_SCHEMA)),
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {table} (
    version        text PRIMARY KEY,
    description    text NOT NULL,
    filename       text NOT NULL,
    checksum       text NOT NULL,
    transactional  boolean NOT NULL,
    outcome        text NOT NULL
                   CHECK (outcome IN ('applied', 'applied_with_warnings', 'failed', 'retired')),
    applied_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms    double precision NOT NULL,
    applied_by     text NOT NULL DEFAULT session_user,
    runner         text NOT NULL,
    notes          text[] NOT NULL DEFAULT '{{}}'
)"""
        ).format(table=table),
        sql.SQL("COMMENT ON TABLE {table} IS {comment}").format(
            table=table,
            comment=sql.Literal(
                "Migrations applied by ms5-migrations (one row per version; the truth after any "
                "failure). Never edit by hand: use ms5:migrationRepair."
            ),
        ),
    ]


def _upsert_sql() -> Any:
    from psycopg import sql

    return sql.SQL(
        "INSERT INTO {table} AS h (version, description, filename, checksum, transactional,"
        " outcome, duration_ms, runner, notes)"
        " VALUES (%(version)s, %(description)s, %(filename)s, %(checksum)s, %(transactional)s,"
        " %(outcome)s, %(duration_ms)s, %(runner)s, %(notes)s)"
        " ON CONFLICT (version) DO UPDATE SET description = EXCLUDED.description,"
        " filename = EXCLUDED.filename, checksum = EXCLUDED.checksum,"
        " transactional = EXCLUDED.transactional, outcome = EXCLUDED.outcome,"
        " applied_at = clock_timestamp(), duration_ms = EXCLUDED.duration_ms,"
        " applied_by = session_user, runner = EXCLUDED.runner, notes = h.notes || EXCLUDED.notes"
    ).format(table=_history_table())


def _runner_identity() -> str:
    return f"ms5-migrations/{RUNNER_VERSION} on {socket.gethostname()} pid {os.getpid()}"


# --------------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------------


class _Session:
    """One connection of a run; counts round trips and collects WARNINGs."""

    def __init__(self, conninfo: str, settings: RunnerSettings) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        self.conninfo = conninfo
        self.settings = settings
        self.queries = 0
        self.warnings: list[str] = []
        options = (
            f"-c lock_timeout={int(settings.lock_timeout_ms)}"
            f" -c statement_timeout={int(settings.statement_timeout_ms)}"
        )
        try:
            self.conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
                make_conninfo(
                    conninfo,
                    application_name=APPLICATION_NAME,
                    options=options,
                    connect_timeout=str(settings.connect_timeout_seconds),
                    client_encoding=CLIENT_ENCODING,
                ),
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise MigrationConnectError(
                f"cannot connect to the database to run migrations: {scrub(str(exc).strip(), conninfo)}"
                " (is the database container healthy? check the dsn's host, port and password)"
            ) from None
        self.conn.add_notice_handler(self._notice)

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        if (diag.severity_nonlocalized or diag.severity) == "WARNING":
            self.warnings.append(f"WARNING: {diag.message_primary}")

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[tuple[Any, ...]]:
        self.queries += 1
        return self.conn.execute(query, params)

    def close(self) -> None:
        self.conn.close()

    @property
    def alive(self) -> bool:
        return not self.conn.closed and not self.conn.broken


@contextmanager
def _session(conninfo: str, settings: RunnerSettings) -> Iterator[_Session]:
    session = _Session(conninfo, settings)
    try:
        yield session
    finally:
        session.close()


def _read_state(
    session: _Session, extension: str = EXTENSION
) -> tuple[list[HistoryRecord], ExtensionState, bool]:
    """History rows, extension state, and whether the history table exists: one round trip."""
    import psycopg

    try:
        row = session.execute(_state_query(extension)).fetchone()
    except psycopg.errors.UndefinedTable:
        from ms5_components.migrations.extension import read_state

        session.queries += 1
        return [], read_state(session.conn, extension), False
    assert row is not None
    raw, installed, default, license_ = row
    records = [
        HistoryRecord(
            version=str(v),
            description=str(d),
            checksum=str(c),
            outcome=str(o),
            notes=tuple(str(n) for n in (notes or ())),
        )
        for v, d, c, o, notes in raw
    ]
    records.sort(key=lambda r: version_key(r.version))
    state = ExtensionState(
        installed_version=str(installed) if installed else None,
        default_version=str(default) if default else None,
        license=str(license_) if license_ else None,
    )
    return records, state, True


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def run(
    conninfo: str,
    migrations: Sequence[Migration],
    *,
    repairs: Sequence[RepairEntry] = (),
    settings: RunnerSettings | None = None,
    check_all_databases: bool = False,
    log: Callable[[str], None] | None = None,
    extension: str = EXTENSION,
) -> RunResult:
    """Apply every pending migration of ``migrations`` to the database of ``conninfo``.

    Raises a :class:`~ms5_components.errors.MigrationError` subclass naming the file/version on
    any failure; what was committed before it stays applied and recorded. ``extension`` names
    the extension kept current (TimescaleDB; tests use a stand-in with two versions).
    """
    import psycopg

    try:
        return _run(
            conninfo,
            migrations,
            repairs=repairs,
            settings=settings or RunnerSettings(),
            check_all_databases=check_all_databases,
            say=log or (lambda _msg: None),
            extension=extension,
        )
    except psycopg.Error as exc:
        # Failures of the runner's own queries (a dropped connection, a missing privilege):
        # migration failures were already turned into MigrationFailedError with their file.
        raise MigrationConnectError(
            f"the migration run stopped on a database error outside any migration: "
            f"{scrub(str(exc).strip(), conninfo)}. Nothing half-applied is recorded; run "
            "`pulumi up` again"
        ) from None


def _run(
    conninfo: str,
    migrations: Sequence[Migration],
    *,
    repairs: Sequence[RepairEntry],
    settings: RunnerSettings,
    check_all_databases: bool,
    say: Callable[[str], None],
    extension: str,
) -> RunResult:
    with _session(conninfo, settings) as session:
        history, ext, table_exists = _read_state(session, extension)
        upgrades: tuple[DatabaseUpgrade, ...] = ()
        needs_lock_path = not table_exists
        plan = plan_run(migrations, [r.row() for r in history], repairs)
        if (
            not needs_lock_path
            and plan.is_noop
            and not ext.needs_update
            and not check_all_databases
        ):
            return RunResult(
                history=tuple(history),
                spent_repairs=plan.spent_repairs,
                extension=ext,
                queries=session.queries,
            )
    if ext.needs_update or check_all_databases:
        say("checking the TimescaleDB extension version in every database")
        upgrades = upgrade_everywhere(
            conninfo,
            extension=extension,
            lock_timeout_ms=settings.lock_timeout_ms,
            statement_timeout_ms=settings.statement_timeout_ms,
            connect_timeout=settings.connect_timeout_seconds,
        )
    with _session(conninfo, settings) as session:
        _acquire_lock(session)
        try:
            _ensure_history_table(session)
            history, ext, _ = _read_state(session, extension)
            plan = plan_run(migrations, [r.row() for r in history], repairs)
            _apply_repairs(session, plan)
            applied: list[str] = []
            for migration in plan.pending:
                say(f"applying {migration.filename}")
                if migration.transactional:
                    _apply_transactional(session, migration)
                else:
                    _apply_statements(session, migration)
                applied.append(migration.version)
            history, ext, _ = _read_state(session, extension)
        finally:
            _release_lock(session)
        return RunResult(
            history=tuple(history),
            applied_now=tuple(applied),
            repaired=tuple(r.version for r in plan.repairs),
            spent_repairs=plan.spent_repairs,
            extension=ext,
            upgrades=upgrades,
            queries=session.queries,
        )


def _acquire_lock(session: _Session) -> None:
    """Take the session-level advisory lock, waiting at most ``advisory_lock_wait_seconds``."""
    import psycopg

    wait = session.settings.advisory_lock_wait_seconds
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            row = session.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        except psycopg.Error as exc:
            raise MigrationConnectError(
                f"cannot take the migration lock: {scrub(str(exc).strip(), session.conninfo)}"
            ) from None
        if row and row[0]:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MigrationLockError(
                f"another migration runner holds the migration lock ({_lock_holder(session)}); "
                f"waited {wait:g} s (ms5:migrationAdvisoryLockWaitSeconds). Nothing was run; "
                "run `pulumi up` again when it has finished, or end that session "
                "(pg_terminate_backend) if it is stuck"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.5)


def _release_lock(session: _Session) -> None:
    """Release the advisory lock (closing the session would too); never masks an error."""
    import psycopg

    if not session.alive:
        return
    try:
        session.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    except psycopg.Error:
        return


def _lock_holder(session: _Session) -> str:
    import psycopg

    classid = (LOCK_KEY >> 32) & 0xFFFFFFFF
    objid = LOCK_KEY & 0xFFFFFFFF
    try:
        row = session.execute(
            "SELECT a.pid, a.application_name, a.usename,"
            " extract(epoch FROM now() - a.backend_start)::int"
            " FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid"
            " AND l.objid = %s::oid AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_catalog.pg_database"
            "  WHERE datname = current_database())",
            (classid, objid),
        ).fetchone()
    except psycopg.Error:
        return "holder unknown"
    if row is None:
        return "it was just released"
    return f"pid {row[0]}, application {row[1]!r}, user {row[2]}, connected {row[3]} s ago"


def _ensure_history_table(session: _Session) -> None:
    with session.conn.transaction():
        for statement in _create_history_sql():
            session.execute(statement)


def _apply_repairs(session: _Session, plan: RunPlan) -> None:
    from psycopg import sql

    if not plan.repairs:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with session.conn.transaction():
        for repair in plan.repairs:
            session.execute(_repair_sql(sql, repair), _repair_params(repair, stamp))


def _repair_sql(sql: Any, repair: Repair) -> Any:
    if repair.migration is None:
        return sql.SQL(
            "UPDATE {table} SET outcome = 'retired', notes = notes || %(note)s::text"
            " WHERE version = %(version)s"
        ).format(table=_history_table())
    return sql.SQL(
        "UPDATE {table} SET checksum = %(checksum)s, description = %(description)s,"
        " filename = %(filename)s, notes = notes || %(note)s::text WHERE version = %(version)s"
    ).format(table=_history_table())


def _repair_params(repair: Repair, stamp: str) -> dict[str, object]:
    m = repair.migration
    if m is None:
        note = (
            f"{stamp} retired by ms5:migrationRepair: file removed "
            f"(was sha256 {repair.old_checksum})"
        )
        return {"version": repair.version, "note": note}
    note = (
        f"{stamp} repaired by ms5:migrationRepair: sha256 {repair.old_checksum} -> {m.checksum} "
        f"({m.filename})"
    )
    return {
        "version": repair.version,
        "checksum": m.checksum,
        "description": m.description,
        "filename": m.filename,
        "note": note,
    }


def _history_params(
    migration: Migration, outcome: str, duration_ms: float, notes: list[str]
) -> dict[str, object]:
    return {
        "version": migration.version,
        "description": migration.description,
        "filename": migration.filename,
        "checksum": migration.checksum,
        "transactional": migration.transactional,
        "outcome": outcome,
        "duration_ms": round(duration_ms, 3),
        "runner": _runner_identity(),
        "notes": notes,
    }


def _backoff(settings: RunnerSettings, attempt: int) -> float:
    return float(min(settings.retry_backoff_seconds * (2 ** (attempt - 1)), 30.0))


def _apply_transactional(session: _Session, migration: Migration) -> None:
    """All statements and the history row in one transaction; retried on lock timeout."""
    import psycopg

    settings = session.settings
    attempt = 0
    while True:
        session.warnings.clear()
        started = time.perf_counter()
        current: Statement | None = None
        try:
            with session.conn.transaction():
                for statement in migration.statements:
                    current = statement
                    session.execute(statement.sql)
                current = None
                duration = (time.perf_counter() - started) * 1000
                notes = list(session.warnings)
                outcome = "applied_with_warnings" if notes else "applied"
                session.execute(_upsert_sql(), _history_params(migration, outcome, duration, notes))
            return
        except psycopg.errors.LockNotAvailable as exc:
            attempt += 1
            if attempt > settings.lock_retries:
                raise _lock_timeout_error(session, migration, current, exc, attempt) from None
            time.sleep(_backoff(settings, attempt))
        except psycopg.Error as exc:
            raise _failure(session, migration, current, exc, done=()) from None


def _apply_statements(session: _Session, migration: Migration) -> None:
    """Non-transactional: each statement on its own (autocommit); a failure is recorded."""
    import psycopg

    settings = session.settings
    session.warnings.clear()
    started = time.perf_counter()
    done: list[str] = []
    for index, statement in enumerate(migration.statements, start=1):
        attempt = 0
        while True:
            try:
                session.execute(statement.sql)
                break
            except psycopg.errors.LockNotAvailable as exc:
                attempt += 1
                if attempt > settings.lock_retries:
                    lock_error = _lock_timeout_error(session, migration, statement, exc, attempt)
                    _record_failure(
                        session,
                        migration,
                        started=started,
                        index=index,
                        statement=statement,
                        message=str(lock_error),
                        done=done,
                    )
                    raise lock_error from None
                time.sleep(_backoff(settings, attempt))
            except psycopg.Error as exc:
                error = _failure(session, migration, statement, exc, done=tuple(done))
                _record_failure(
                    session,
                    migration,
                    started=started,
                    index=index,
                    statement=statement,
                    message=error.db_message,
                    done=done,
                )
                raise error from None
        done.append(f"statement {index} (line {statement.line}): {_summary(statement)}")
    duration = (time.perf_counter() - started) * 1000
    notes = list(session.warnings)
    outcome = "applied_with_warnings" if notes else "applied"
    session.execute(_upsert_sql(), _history_params(migration, outcome, duration, notes))


def _record_failure(
    session: _Session,
    migration: Migration,
    *,
    started: float,
    index: int,
    statement: Statement,
    message: str,
    done: list[str],
) -> None:
    """Record a failed non-transactional migration (best effort: the connection may be gone)."""
    import psycopg

    if not session.alive:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    notes = [
        f"{stamp} failed at statement {index} (line {statement.line}): {message}; "
        f"{len(done)} statement(s) done before it; retried from the first statement next run",
        *session.warnings,
    ]
    duration = (time.perf_counter() - started) * 1000
    try:
        session.execute(_upsert_sql(), _history_params(migration, "failed", duration, notes))
    except psycopg.Error:
        return


def _summary(statement: Statement) -> str:
    text = " ".join(statement.sql.split())
    return text if len(text) <= 90 else text[:87] + "..."


def _invalid_indexes(session: _Session) -> list[str]:
    import psycopg

    if not session.alive:
        return []
    try:
        rows = session.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_index i"
            " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE NOT i.indisvalid ORDER BY 1"
        ).fetchall()
    except psycopg.Error:
        return []
    return [str(r[0]) for r in rows]


def _db_message(exc: Exception, conninfo: str) -> str:
    import psycopg

    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        diag = exc.diag
        parts: list[str] = [str(diag.message_primary)]
        if diag.message_detail:
            parts.append(f"DETAIL: {diag.message_detail}")
        if diag.message_hint:
            parts.append(f"HINT: {diag.message_hint}")
        if diag.context:
            parts.append(f"CONTEXT: {' | '.join(diag.context.strip().splitlines())}")
        text = " ".join(parts)
    else:
        text = str(exc).strip() or type(exc).__name__
    return scrub(text, conninfo)


def _failure(
    session: _Session,
    migration: Migration,
    statement: Statement | None,
    exc: Exception,
    *,
    done: tuple[str, ...],
) -> MigrationFailedError:
    import psycopg

    position: int | None = None
    sqlstate: str | None = None
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate
        raw = exc.diag.statement_position
        position = int(raw) if raw and raw.isdigit() else None
    line = statement.line_at(position) if statement is not None else None
    message = _db_message(exc, session.conninfo)
    lost = not session.alive or isinstance(exc, psycopg.OperationalError)
    if migration.transactional:
        if lost:
            next_step = (
                "the connection was lost; the server rolled the migration back and nothing of it "
                "is recorded. Run `pulumi up` again: it resumes at this migration"
            )
        else:
            next_step = (
                "this migration was rolled back and is not recorded; earlier ones stay applied. "
                "Fix the file and run `pulumi up` again: it resumes here"
            )
    else:
        invalid = _invalid_indexes(session)
        next_step = (
            "statements before the failing one stay done; the migration is recorded as failed "
            "and is retried from its first statement on the next `pulumi up`, so keep its "
            "statements re-runnable (IF NOT EXISTS)"
        )
        if lost:
            next_step += " (the connection was lost, so the failure could not be recorded)"
        if invalid:
            next_step += (
                f". Invalid indexes left behind (a failed CONCURRENTLY build): "
                f"{', '.join(invalid)}; drop them (DROP INDEX CONCURRENTLY) before retrying"
            )
    return MigrationFailedError(
        filename=migration.filename,
        version=migration.version,
        line=line,
        message=message,
        sqlstate=sqlstate,
        done=done,
        next_step=next_step,
    )


def _lock_timeout_error(
    session: _Session,
    migration: Migration,
    statement: Statement | None,
    exc: Exception,
    attempts: int,
) -> MigrationLockError:
    where = f"line {statement.line}: " if statement is not None else ""
    return MigrationLockError(
        f"{where}could not get a table lock within lock_timeout "
        f"({session.settings.lock_timeout_ms} ms) in {attempts} attempt(s): "
        f"{_db_message(exc, session.conninfo)}. A long transaction holds a lock this migration "
        "needs; nothing of this migration is recorded. Find it in pg_stat_activity, let it end, "
        "then run `pulumi up` again (or raise ms5:migrationLockTimeoutMs / "
        "ms5:migrationLockRetries)",
        filename=migration.filename,
    )


def history(conninfo: str, settings: RunnerSettings | None = None) -> tuple[HistoryRecord, ...]:
    """The history rows of a database (empty before the first run); for tools and tests."""
    with _session(conninfo, settings or RunnerSettings()) as session:
        records, _, _ = _read_state(session)
    return tuple(records)


def describe(result: RunResult) -> Mapping[str, object]:
    """A plain summary of a run (for logs and the provider's outputs)."""
    return {
        "applied_now": list(result.applied_now),
        "current_version": result.current_version,
        "repaired": list(result.repaired),
        "spent_repairs": list(result.spent_repairs),
    }


__all__ = [
    "APPLICATION_NAME",
    "HISTORY_SCHEMA",
    "HISTORY_TABLE",
    "LOCK_KEY",
    "HistoryRecord",
    "RunResult",
    "RunnerSettings",
    "describe",
    "history",
    "run",
    "scrub",
]
