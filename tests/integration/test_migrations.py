"""The migration runner against the real PostgreSQL 17 + TimescaleDB test server.

Covers every row of the "Migrations" table of RELIABILITY.md: a failing migration in the middle
(then fixed and resumed), non-transactional migrations, concurrent runners, lock timeouts, drift
(edited and deleted files), a connection killed mid-migration; plus the default MS5.0 schema.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ms5_components.errors import (
    MigrationConnectError,
    MigrationDriftError,
    MigrationFailedError,
    MigrationLockError,
    MigrationOrderError,
)
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import RepairEntry, load_directory
from ms5_components.migrations.runner import (
    APPLICATION_NAME,
    RunnerSettings,
    RunResult,
    history,
    run,
)

pytestmark = pytest.mark.integration

FAST = RunnerSettings(
    lock_timeout_ms=2_000,
    statement_timeout_ms=60_000,
    lock_retries=2,
    retry_backoff_seconds=0.05,
    advisory_lock_wait_seconds=60,
)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def apply(dsn: str, directory: Path, **kwargs: object) -> RunResult:
    settings = kwargs.pop("settings", FAST)
    assert isinstance(settings, RunnerSettings)
    return run(dsn, load_directory(directory), settings=settings, **kwargs)  # type: ignore[arg-type]


def query(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


def regclass(dsn: str, name: str) -> object:
    return query(dsn, "SELECT to_regclass(%s)", (name,))[0][0]


def history_rows(dsn: str) -> list[tuple[object, ...]]:
    return query(
        dsn,
        "SELECT version, outcome, checksum, applied_at FROM ms5_meta.schema_history ORDER BY version",
    )


FIVE = {
    "V1__one.sql": "CREATE TABLE t1 (id int);\n",
    "V2__two.sql": "CREATE TABLE t2 (id int);\nINSERT INTO t2 VALUES (2);\n",
    "V3__three.sql": "CREATE TABLE t3 (id int);\n",
    "V4__four.sql": "CREATE TABLE t4 (id int);\n",
    "V5__five.sql": "CREATE TABLE t5 (id int);\n",
}


# ---- the default MS5.0 schema ----------------------------------------------------------------


def test_fresh_database_gets_the_whole_default_schema(pg_database: str, pg_server: object) -> None:
    directory = repository_migrations_dir()
    migrations = load_directory(directory)
    result = run(pg_database, migrations, settings=FAST)

    assert result.applied_now == tuple(m.version for m in migrations)
    assert result.current_version == migrations[-1].version
    assert result.checksums == {m.version: m.checksum for m in migrations}
    hypertables = dict(
        query(
            pg_database,
            "SELECT hypertable_name, d.time_interval::text FROM timescaledb_information.dimensions d"
            " WHERE hypertable_schema = 'ms5' ORDER BY 1",
        )
    )
    assert hypertables == {
        "downtime_events": "90 days",
        "energy_readings": "7 days",
        "machine_metrics": "02:00:00",
        "oee_measurements": "30 days",
        "production_counts": "7 days",
    }
    for rollup in (
        "machine_metrics_1m",
        "machine_metrics_1h",
        "production_1h",
        "energy_1h",
        "downtime_1d",
        "oee_1d",
    ):
        assert regclass(pg_database, f"ms5.{rollup}") is not None, rollup
    # The dashboards' queries run against the rollups whatever the license.
    query(pg_database, "INSERT INTO ms5.machine_metrics VALUES (now(), 'm1', 'temp', 20.5)")
    rows = query(pg_database, "SELECT machine_id, samples FROM ms5.machine_metrics_1m")
    assert rows == [("m1", 1)]
    index_valid = query(
        pg_database,
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = 'ms5.machines_line_idx'::regclass",
    )
    assert index_valid == [(True,)]

    outcomes = {r.version: r.outcome for r in result.history}
    license_ = getattr(pg_server, "license", None)
    if license_ == "timescale":
        assert set(outcomes.values()) == {"applied"}
        assert not result.warnings
    else:
        # Never silently: each skipped feature is a WARNING recorded in the history.
        assert outcomes["4"] == outcomes["5"] == "applied_with_warnings"
        assert outcomes["1"] == outcomes["2"] == outcomes["3"] == outcomes["6"] == "applied"
        assert any(
            "retention policy on ms5.machine_metrics skipped" in n for n in result.warnings["4"]
        )
        assert any("plain view" in n and "machine_metrics_1m" in n for n in result.warnings["5"])
        stored = query(
            pg_database,
            "SELECT notes FROM ms5_meta.schema_history WHERE version = '4'",
        )[0][0]
        assert isinstance(stored, list) and len(stored) == 10


def test_history_table_columns(pg_database: str, tmp_path: Path) -> None:
    apply(pg_database, write(tmp_path, {"V1__one.sql": "SELECT 1;\n"}))
    row = query(
        pg_database,
        "SELECT version, description, filename, checksum, transactional, outcome,"
        " applied_at IS NOT NULL, duration_ms >= 0, applied_by, runner, notes"
        " FROM ms5_meta.schema_history",
    )
    assert len(row) == 1
    version, description, filename, digest, tx, outcome, at, dur, by, runner, notes = row[0]
    assert (version, description, filename, tx, outcome, at, dur, notes) == (
        "1",
        "one",
        "V1__one.sql",
        True,
        "applied",
        True,
        True,
        [],
    )
    assert by == conninfo_to_dict(pg_database)["user"]
    assert re.fullmatch(r"[0-9a-f]{64}", str(digest))
    assert str(runner).startswith("ms5-migrations/")


# ---- no-op, one new migration, order ----------------------------------------------------------


def test_second_run_is_a_noop_in_one_query(pg_database: str, tmp_path: Path) -> None:
    directory = write(tmp_path, FIVE)
    apply(pg_database, directory)
    before = history_rows(pg_database)
    again = apply(pg_database, directory)
    assert again.applied_now == ()
    assert again.queries == 1
    assert history_rows(pg_database) == before


def test_one_new_migration_applies_only_it(pg_database: str, tmp_path: Path) -> None:
    directory = write(tmp_path, FIVE)
    apply(pg_database, directory)
    before = history_rows(pg_database)
    write(directory, {"V6__six.sql": "CREATE TABLE t6 (id int);\n"})
    result = apply(pg_database, directory)
    assert result.applied_now == ("6",)
    assert history_rows(pg_database)[:5] == before
    assert regclass(pg_database, "t6") == "t6"


def test_new_version_below_an_applied_one_is_refused(pg_database: str, tmp_path: Path) -> None:
    directory = write(tmp_path, {k: v for k, v in FIVE.items() if not k.startswith("V3")})
    apply(pg_database, directory)
    write(directory, {"V3__three.sql": FIVE["V3__three.sql"]})
    with pytest.raises(MigrationOrderError, match=r"V3__three\.sql: version below 5"):
        apply(pg_database, directory)
    assert regclass(pg_database, "t3") is None


# ---- a failing migration in the middle ----------------------------------------------------------


def test_failure_in_the_middle_keeps_earlier_ones_then_resumes(
    pg_database: str, tmp_path: Path
) -> None:
    files = dict(FIVE)
    files["V3__three.sql"] = (
        "-- third\nCREATE TABLE t3 (id int);\n\nINSERT INTO t3 VALUES (1);\nSELEC broken FROM t3;\n"
    )
    directory = write(tmp_path, files)
    with pytest.raises(MigrationFailedError) as caught:
        apply(pg_database, directory)
    error = caught.value
    assert error.filename == "V3__three.sql"
    assert error.line == 5
    assert error.sqlstate == "42601"
    assert 'syntax error at or near "SELEC"' in str(error)
    assert str(error).startswith("V3__three.sql:5: migration 3 failed")
    assert [r[:2] for r in history_rows(pg_database)] == [("1", "applied"), ("2", "applied")]
    assert regclass(pg_database, "t2") == "t2"
    assert regclass(pg_database, "t3") is None  # rolled back with its transaction

    write(directory, {"V3__three.sql": "CREATE TABLE t3 (id int);\n"})
    resumed = apply(pg_database, directory)
    assert resumed.applied_now == ("3", "4", "5")
    assert [r[0] for r in history_rows(pg_database)] == ["1", "2", "3", "4", "5"]


def test_runtime_error_names_the_statement_line(pg_database: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {
            "V1__one.sql": (
                "CREATE TABLE t (id int);\n"
                "/* a comment; with a semicolon */\n"
                "INSERT INTO t VALUES ('a;b'::text::int);\n"
            )
        },
    )
    with pytest.raises(MigrationFailedError) as caught:
        apply(pg_database, directory)
    assert caught.value.line == 3
    assert caught.value.sqlstate == "22P02"
    assert "invalid input syntax for type integer" in str(caught.value)


def test_error_inside_a_do_block_carries_its_context(pg_database: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {"V1__one.sql": ("SELECT 1;\nDO $$\nBEGIN\n  RAISE EXCEPTION 'boom %', 42;\nEND\n$$;\n")},
    )
    with pytest.raises(MigrationFailedError) as caught:
        apply(pg_database, directory)
    assert caught.value.line == 2
    assert "boom 42" in str(caught.value)
    assert "CONTEXT: PL/pgSQL function inline_code_block line 3" in str(caught.value)


# ---- non-transactional migrations -----------------------------------------------------------------


def test_non_transactional_migration_runs_statement_by_statement(
    pg_database: str, tmp_path: Path
) -> None:
    directory = write(
        tmp_path,
        {
            "V1__table.sql": "CREATE TABLE items (id int, code text);\n"
            "INSERT INTO items SELECT g, 'c' || g FROM generate_series(1, 1000) g;\n",
            "V2__index.sql": "-- ms5:transaction=off\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_code_idx ON items (code);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_id_idx ON items (id);\n",
        },
    )
    result = apply(pg_database, directory)
    assert result.applied_now == ("1", "2")
    valid = query(
        pg_database,
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'items'::regclass ORDER BY 1",
    )
    assert valid == [("items_code_idx", True), ("items_id_idx", True)]
    assert query(
        pg_database, "SELECT transactional FROM ms5_meta.schema_history WHERE version = '2'"
    ) == [(False,)]


def test_non_transactional_failure_is_reported_with_what_was_done(
    pg_database: str, tmp_path: Path
) -> None:
    directory = write(
        tmp_path,
        {
            "V1__table.sql": "CREATE TABLE items (id int);\nINSERT INTO items VALUES (1), (1), (2);\n",
            "V2__index.sql": "-- ms5:transaction=off\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_plain_idx ON items (id);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY items_unique_idx ON items (id);\n"
            "CREATE TABLE never (id int);\n",
            "V3__after.sql": "CREATE TABLE after_two (id int);\n",
        },
    )
    with pytest.raises(MigrationFailedError) as caught:
        apply(pg_database, directory)
    error = caught.value
    message = str(error)
    assert error.filename == "V2__index.sql"
    assert error.line == 3
    assert error.done == (
        "statement 1 (line 2): CREATE INDEX CONCURRENTLY IF NOT EXISTS items_plain_idx ON items (id)",
    )
    assert "public.items_unique_idx" in message  # the invalid index left behind is named
    assert "could not create unique index" in message
    rows = query(
        pg_database, "SELECT version, outcome, notes FROM ms5_meta.schema_history ORDER BY 1"
    )
    assert [r[:2] for r in rows] == [("1", "applied"), ("2", "failed")]
    notes = rows[1][2]
    assert isinstance(notes, list)
    assert "failed at statement 2 (line 3)" in notes[0]
    assert regclass(pg_database, "never") is None
    assert regclass(pg_database, "after_two") is None

    # Fixed (duplicates removed, the invalid index dropped first): retried from statement 1.
    write(
        directory,
        {
            "V2__index.sql": "-- ms5:transaction=off\n"
            "DELETE FROM items a USING items b WHERE a.ctid > b.ctid AND a.id = b.id;\n"
            "DROP INDEX CONCURRENTLY IF EXISTS items_unique_idx;\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_plain_idx ON items (id);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY items_unique_idx ON items (id);\n"
            "CREATE TABLE never (id int);\n"
        },
    )
    resumed = apply(pg_database, directory)
    assert resumed.applied_now == ("2", "3")
    row = query(
        pg_database,
        "SELECT outcome, array_length(notes, 1) FROM ms5_meta.schema_history WHERE version = '2'",
    )
    assert row == [("applied", 1)]  # the failure note is kept as history


# ---- drift ------------------------------------------------------------------------------------


def test_edited_file_stops_before_any_sql(pg_database: str, tmp_path: Path) -> None:
    directory = write(tmp_path, FIVE)
    first = apply(pg_database, directory)
    recorded = first.checksums["2"]
    write(
        directory,
        {
            "V2__two.sql": "CREATE TABLE t2 (id bigint);\n",
            "V6__six.sql": "CREATE TABLE t6 (id int);\n",
        },
    )
    current = load_directory(directory)[1].checksum
    with pytest.raises(MigrationDriftError) as caught:
        apply(pg_database, directory)
    message = str(caught.value)
    assert "V2__two.sql (version 2) changed after it was applied" in message
    assert recorded in message and current in message
    assert f"ms5:migrationRepair[0]' 2:{current}" in message
    assert regclass(pg_database, "t6") is None  # nothing ran


def test_deleted_file_stops_before_any_sql(pg_database: str, tmp_path: Path) -> None:
    directory = write(tmp_path, FIVE)
    first = apply(pg_database, directory)
    (directory / "V4__four.sql").unlink()
    write(directory, {"V6__six.sql": "CREATE TABLE t6 (id int);\n"})
    with pytest.raises(MigrationDriftError) as caught:
        apply(pg_database, directory)
    message = str(caught.value)
    assert "V4__four.sql (version 4) was applied but its file is gone" in message
    assert first.checksums["4"] in message
    assert regclass(pg_database, "t6") is None


def test_repair_with_checksum_accepts_exactly_that_content_once(
    pg_database: str, tmp_path: Path
) -> None:
    directory = write(tmp_path, FIVE)
    first = apply(pg_database, directory)
    write(directory, {"V2__two.sql": "CREATE TABLE t2 (id int); -- reformatted\n"})
    edited = load_directory(directory)[1].checksum
    repair = (RepairEntry.parse(f"2:{edited}"),)
    result = apply(pg_database, directory, repairs=repair)
    assert result.repaired == ("2",)
    assert result.applied_now == ()
    assert result.checksums["2"] == edited
    notes = query(pg_database, "SELECT notes FROM ms5_meta.schema_history WHERE version = '2'")
    assert f"sha256 {first.checksums['2']} -> {edited}" in str(notes)
    # The entry is spent: it is reported, and a further edit is drift again.
    again = apply(pg_database, directory, repairs=repair)
    assert again.spent_repairs == (f"2:{edited}",)
    write(directory, {"V2__two.sql": "CREATE TABLE t2 (id int); -- edited again\n"})
    with pytest.raises(MigrationDriftError):
        apply(pg_database, directory, repairs=repair)


def test_repair_retires_a_deleted_file(pg_database: str, tmp_path: Path) -> None:
    directory = write(tmp_path, FIVE)
    apply(pg_database, directory)
    (directory / "V4__four.sql").unlink()
    result = apply(pg_database, directory, repairs=(RepairEntry.parse("4"),))
    assert result.repaired == ("4",)
    assert {r.version: r.outcome for r in result.history}["4"] == "retired"
    assert "4" not in result.applied_versions
    assert apply(pg_database, directory).applied_now == ()


# ---- concurrency and locks ----------------------------------------------------------------------


def test_ten_concurrent_runners_apply_each_version_exactly_once(
    pg_database: str, tmp_path: Path
) -> None:
    files = {
        "V1__log.sql": "CREATE TABLE applied_log (version text, at timestamptz DEFAULT now());\n"
        "INSERT INTO applied_log (version) VALUES ('1');\n",
        "V2__slow.sql": "SELECT pg_sleep(0.3);\nINSERT INTO applied_log (version) VALUES ('2');\n"
        "CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 20000) g;\n",
        "V3__concurrently.sql": "-- ms5:transaction=off\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS big_id_idx ON big (id);\n"
        "INSERT INTO applied_log (version) VALUES ('3');\n",
        "V4__more.sql": "INSERT INTO applied_log (version) VALUES ('4');\n",
    }
    directory = write(tmp_path, files)
    migrations = load_directory(directory)
    results: list[RunResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def runner() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(run(pg_database, migrations, settings=FAST))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(10)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a runner deadlocked"
    assert errors == []
    assert len(results) == 10
    assert time.monotonic() - started < 60
    counts = query(pg_database, "SELECT version, count(*) FROM applied_log GROUP BY 1 ORDER BY 1")
    assert counts == [("1", 1), ("2", 1), ("3", 1), ("4", 1)]
    applied_by_runs = sorted(v for r in results for v in r.applied_now)
    assert applied_by_runs == ["1", "2", "3", "4"]
    assert all(r.current_version == "4" for r in results)
    assert query(
        pg_database, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_id_idx'::regclass"
    ) == [(True,)]


def test_advisory_lock_wait_is_bounded(pg_database: str, tmp_path: Path) -> None:
    directory = write(tmp_path, {"V1__one.sql": "CREATE TABLE t1 (id int);\n"})
    with psycopg.connect(pg_database, autocommit=True, application_name="other-runner") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (0x6D73_355F_6D69_6772,))
        started = time.monotonic()
        settings = RunnerSettings(advisory_lock_wait_seconds=1.0)
        with pytest.raises(MigrationLockError, match="another migration runner holds") as caught:
            apply(pg_database, directory, settings=settings)
        assert time.monotonic() - started < 5
        assert "'other-runner'" in str(caught.value)
    assert regclass(pg_database, "t1") is None
    assert apply(pg_database, directory).applied_now == ("1",)


def test_lock_timeout_against_a_long_transaction(pg_database: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {
            "V1__table.sql": "CREATE TABLE busy (id int);\nINSERT INTO busy VALUES (1);\n",
        },
    )
    apply(pg_database, directory)
    write(directory, {"V2__alter.sql": "ALTER TABLE busy ADD COLUMN note text;\n"})
    settings = RunnerSettings(lock_timeout_ms=300, lock_retries=2, retry_backoff_seconds=0.1)
    with psycopg.connect(pg_database) as long_tx:
        long_tx.execute("SELECT * FROM busy")  # holds ACCESS SHARE until the transaction ends
        started = time.monotonic()
        with pytest.raises(MigrationLockError) as caught:
            apply(pg_database, directory, settings=settings)
        elapsed = time.monotonic() - started
        # 3 attempts x 300 ms + backoff 0.1 + 0.2 s, plus connection overhead.
        assert 0.9 <= elapsed < 3.0
        message = str(caught.value)
        assert message.startswith("V2__alter.sql: line 1: could not get a table lock")
        assert "in 3 attempt(s)" in message
        assert "canceling statement due to lock timeout" in message
        # The long transaction was never blocked, and can still write.
        long_tx.execute("INSERT INTO busy VALUES (2)")
        long_tx.commit()
    assert [r[0] for r in history_rows(pg_database)] == ["1"]
    assert apply(pg_database, directory, settings=settings).applied_now == ("2",)


def test_lock_timeout_retry_succeeds_when_the_lock_is_released(
    pg_database: str, tmp_path: Path
) -> None:
    directory = write(tmp_path, {"V1__table.sql": "CREATE TABLE busy (id int);\n"})
    apply(pg_database, directory)
    write(directory, {"V2__alter.sql": "ALTER TABLE busy ADD COLUMN note text;\n"})
    settings = RunnerSettings(lock_timeout_ms=200, lock_retries=5, retry_backoff_seconds=0.2)
    long_tx = psycopg.connect(pg_database)
    long_tx.execute("SELECT * FROM busy")
    timer = threading.Timer(0.5, long_tx.rollback)
    timer.start()
    try:
        result = apply(pg_database, directory, settings=settings)
    finally:
        timer.join()
        long_tx.close()
    assert result.applied_now == ("2",)


def test_connection_killed_mid_migration_then_rerun(pg_database: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {
            "V1__one.sql": "CREATE TABLE t1 (id int);\nCREATE TABLE kill_switch (on_ boolean);\n",
            "V2__slow.sql": "CREATE TABLE t2 (id int);\n"
            "SELECT pg_sleep(CASE WHEN EXISTS (SELECT FROM kill_switch) THEN 60 ELSE 0 END);\n"
            "INSERT INTO t2 VALUES (1);\n",
            "V3__three.sql": "CREATE TABLE t3 (id int);\n",
        },
    )
    apply(
        pg_database,
        write(tmp_path / "first", {"V1__one.sql": (directory / "V1__one.sql").read_text()}),
    )
    query(pg_database, "INSERT INTO kill_switch VALUES (true)")
    errors: list[BaseException] = []

    def target() -> None:
        try:
            apply(pg_database, directory)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 20
    killed = False
    while time.monotonic() < deadline and not killed:
        rows = query(
            pg_database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND query LIKE 'SELECT pg_sleep%%' AND state = 'active'",
            (APPLICATION_NAME,),
        )
        killed = bool(rows)
        time.sleep(0.05)
    thread.join(timeout=30)
    assert killed
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, MigrationFailedError)
    assert error.filename == "V2__slow.sql"
    assert "connection was lost" in str(error)
    assert [r[0] for r in history_rows(pg_database)] == ["1"]  # nothing half-applied recorded
    assert regclass(pg_database, "t2") is None

    query(pg_database, "DELETE FROM kill_switch")
    resumed = apply(pg_database, directory)
    assert resumed.applied_now == ("2", "3")
    assert query(pg_database, "SELECT count(*) FROM t2") == [(1,)]


# ---- secrets ----------------------------------------------------------------------------------


def test_connection_errors_never_show_the_password_or_dsn(pg_database: str, tmp_path: Path) -> None:
    params = conninfo_to_dict(pg_database)
    wrong = make_conninfo(pg_database, password="not-the-password-" + "x" * 8)
    directory = write(tmp_path, {"V1__one.sql": "SELECT 1;\n"})
    with pytest.raises(MigrationConnectError) as caught:
        apply(wrong, directory)
    message = str(caught.value)
    assert "not-the-password" not in message
    assert str(params["password"]) not in message
    assert str(params["host"]) not in message
    assert "password authentication failed" in message


def test_history_helper_reads_rows(pg_database: str, tmp_path: Path) -> None:
    assert history(pg_database) == ()
    apply(pg_database, write(tmp_path, {"V1__one.sql": "SELECT 1;\n"}))
    assert [r.version for r in history(pg_database)] == ["1"]


def copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), target)
    return target


def test_default_schema_is_idempotent_when_history_is_lost(
    pg_database: str, tmp_path: Path
) -> None:
    """Re-running every default migration on an already migrated database (e.g. history table
    dropped by hand) does not fail: the files are written IF NOT EXISTS / CREATE OR REPLACE."""
    directory = copy_default(tmp_path)
    apply(pg_database, directory)
    query(pg_database, "DROP TABLE ms5_meta.schema_history")
    again = apply(pg_database, directory)
    assert len(again.applied_now) == len(load_directory(directory))
