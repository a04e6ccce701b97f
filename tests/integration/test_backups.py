"""Backups, verification, retention and restore drills against the real test server.

The backup script runs in the Debian test root (the chroot executor) with that root's
PostgreSQL 17 tools, against the test server, writing to a directory in the root: the same
commands the production path runs inside the database container. Covers every "Backups" row of
RELIABILITY.md and a round trip of the repository's schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import ms5_testenv
from ms5_components.backups import runner
from ms5_components.backups.manifest import (
    BAD_MARKER,
    METADATA_SQL,
    FileEntry,
    Manifest,
    Metadata,
    parse_manifest,
    verify_files,
)
from ms5_components.backups.plan import plan_retention
from ms5_components.errors import BackupError, MigrationLockError
from ms5_components.migrations.plan import load_directory
from ms5_components.migrations.runner import RunnerSettings, run

pytestmark = pytest.mark.integration

FAST = runner.BackupSettings(jobs=2, lock_wait_seconds=3, timeout_seconds=300)
MakeTarget = Callable[..., runner.Target]


def published(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".tmp-"))


def drill_databases(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'ms5_drill_%'"
        ).fetchall()
    return [str(r[0]) for r in rows]


def host_listing(backup: Path) -> dict[str, FileEntry]:
    """The files of a backup, hashed here in Python (independently of the script)."""
    out: dict[str, FileEntry] = {}
    for path in sorted((backup / "dump").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out[path.relative_to(backup).as_posix()] = FileEntry(
                sha256=hashlib.sha256(data).hexdigest(), size=len(data)
            )
    return out


# --------------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------------


def test_round_trip_of_the_repository_schema(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path, pg_server: Any
) -> None:
    target = backup_target(ms5_database)
    outcome = runner.take_backup(target, FAST, label="round-trip", reason="test")
    meta = outcome.manifest.metadata
    assert meta.postgres_version_num == pg_server.server_version_num
    assert meta.timescaledb_version == pg_server.timescaledb_version
    assert meta.timescaledb_license == pg_server.license
    assert (
        meta.schema_version == load_directory(Path(__file__).parents[2] / "migrations")[-1].version
    )
    assert meta.row_counts["ms5.machine_metrics"] == 3000
    assert meta.row_counts["ms5.production_counts"] == 500
    assert meta.chunk_counts["ms5.machine_metrics"] > 1
    assert "timescaledb" in meta.extensions
    assert outcome.manifest.label == "round-trip"
    assert published(backup_dir) == [outcome.name] and leftovers(backup_dir) == []
    # The manifest the script wrote verifies with the Python verifier (hashed here).
    on_disk = parse_manifest((backup_dir / outcome.name / "manifest.json").read_text())
    assert verify_files(on_disk, host_listing(backup_dir / outcome.name)) == []

    drill = runner.restore_drill(target, FAST)
    assert drill.ok, drill.mismatches
    assert drill.backup == outcome.name and drill.rto_seconds > 0
    assert drill_databases(pg_server.dsn) == []


def test_a_restore_that_differs_from_the_manifest_fails_the_drill_and_drops_the_scratch_db(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path, pg_server: Any
) -> None:
    target = backup_target(ms5_database)
    outcome = runner.take_backup(target, FAST)
    path = backup_dir / outcome.name / "manifest.json"
    data = json.loads(path.read_text())
    data["metadata"]["row_counts"]["ms5.machine_metrics"] = 2999
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")
    drill = runner.restore_drill(target, FAST, outcome.name)
    assert not drill.ok
    assert drill.mismatches == ("row_counts.ms5.machine_metrics: backup 2999, restored 3000",)
    assert drill_databases(pg_server.dsn) == []


# --------------------------------------------------------------------------------------------------
# pg_dump fails: nothing published, earlier backups untouched
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"password": "wrong-password-000"}, "password authentication failed"),
        ({"port": "1"}, "does not accept connections"),
    ],
    ids=["auth", "server-down"],
)
def test_a_failed_dump_publishes_nothing_and_keeps_earlier_backups(
    ms5_database: str,
    backup_target: MakeTarget,
    backup_dir: Path,
    override: dict[str, str],
    expected: str,
) -> None:
    good = backup_target(ms5_database)
    first = runner.take_backup(good, FAST)
    before = host_listing(backup_dir / first.name)
    bad = runner.Target(
        executor=good.executor,
        backup_dir=good.backup_dir,
        database=good.database,
        connection={**good.connection, "PGPORT": override.get("port", good.connection["PGPORT"])},
        password=override.get("password", good.password),
        pg_bindir=good.pg_bindir,
    )
    with pytest.raises(BackupError) as info:
        runner.take_backup(bad, FAST)
    assert expected in str(info.value)
    assert good.password not in str(info.value)
    assert published(backup_dir) == [first.name]
    assert leftovers(backup_dir) == []
    assert host_listing(backup_dir / first.name) == before
    entries = runner.list_backups(good)
    assert [(e.name, e.state) for e in entries] == [(first.name, "verified")]


# --------------------------------------------------------------------------------------------------
# Crash and disk full while writing
# --------------------------------------------------------------------------------------------------


def test_a_crash_while_writing_leaves_only_a_temporary_that_the_next_backup_sweeps(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path
) -> None:
    target = backup_target(ms5_database)
    slow = runner.BackupSettings(jobs=1, lock_wait_seconds=60, timeout_seconds=300)
    argv, env = target.executor.command(
        runner.script_argv("backup"), runner.script_env(target, slow)
    )
    with psycopg.connect(ms5_database) as blocker:
        # An exclusive lock makes the dump wait, so it is surely mid-way when it is killed.
        blocker.execute("LOCK TABLE ms5.machines IN ACCESS EXCLUSIVE MODE")
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while not any((backup_dir / t / "dump").exists() for t in leftovers(backup_dir)):
            assert time.monotonic() < deadline, "the backup never started writing"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    [crashed] = leftovers(backup_dir)
    assert published(backup_dir) == []
    assert [e.state for e in runner.list_backups(target)] == ["temporary"]
    # The next backup takes over the dead run's lock, sweeps its leftover and publishes.
    outcome = runner.take_backup(target, FAST)
    assert outcome.swept == (crashed,)
    assert leftovers(backup_dir) == [] and published(backup_dir) == [outcome.name]


def test_disk_full_while_writing_publishes_nothing(
    ms5_database: str, backup_target: MakeTarget, testenv: Any
) -> None:
    with psycopg.connect(ms5_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ms5.machine_metrics (time, machine_id, metric, value) "
            "SELECT now() - i * interval '1 second', md5(i::text), md5((i * 7)::text), random() "
            "FROM generate_series(1, 60000) i"
        )
    small = Path(testenv.run_dir) / f"full-{os.getpid()}-{time.monotonic_ns()}"
    small.mkdir()
    user = testenv._user("postgres")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=1m,uid={user.uid},gid={user.gid}", "ms5-full", small],
        check=True,
    )
    try:
        target = backup_target(ms5_database, small)
        with pytest.raises(BackupError) as info:
            runner.take_backup(target, FAST)
        assert "No space left on device" in str(info.value) or "disk full" in str(info.value)
        assert published(small) == []
        assert leftovers(small) == []  # the failed run removed its own temporary directory
    finally:
        subprocess.run(["umount", small], check=False)
        small.rmdir()


# --------------------------------------------------------------------------------------------------
# Corruption: never treated as restorable
# --------------------------------------------------------------------------------------------------


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _largest(backup: Path) -> Path:
    return max(
        (p for p in (backup / "dump").iterdir() if p.name != "toc.dat"),
        key=lambda p: p.stat().st_size,
    )


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "byte-flipped": lambda b: _flip(_largest(b)),
    "truncated": lambda b: _truncate(_largest(b)),
    "toc-truncated": lambda b: _truncate(b / "dump" / "toc.dat"),
    "file-removed": lambda b: _largest(b).unlink(),
    "file-added": lambda b: (b / "dump" / "9999.dat.gz").write_bytes(b"x"),
    "manifest-garbled": lambda b: (b / "manifest.json").write_text("{not json"),
}


@pytest.mark.parametrize("corrupt", sorted(CORRUPTIONS))
def test_a_corrupted_backup_fails_verification_and_is_never_restored(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path, corrupt: str, pg_server: Any
) -> None:
    target = backup_target(ms5_database)
    outcome = runner.take_backup(target, FAST)
    assert runner.verify_backup(target, outcome.name) == []
    CORRUPTIONS[corrupt](backup_dir / outcome.name)
    problems = runner.verify_backup(target, outcome.name)
    assert problems, f"{corrupt}: verification passed"
    assert outcome.name in problems[0]
    # Marked: never verified again, never drilled, never counted as verified.
    assert (backup_dir / outcome.name / BAD_MARKER).exists()
    assert [e.state for e in runner.list_backups(target)] == ["unverified"]
    with pytest.raises(BackupError, match="is not restorable"):
        runner.restore_drill(target, FAST, outcome.name)
    assert drill_databases(pg_server.dsn) == []


# --------------------------------------------------------------------------------------------------
# Retention after failures
# --------------------------------------------------------------------------------------------------


def test_retention_after_failed_backups_keeps_the_newest_verified(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path
) -> None:
    target = backup_target(ms5_database)
    first = runner.take_backup(target, FAST)
    second = runner.take_backup(target, FAST)
    # Age both by renaming them to old stamps (retention reads the time from the name).
    old_first, old_second = (
        f"{target.database}-20200101T000000Z",
        f"{target.database}-20200102T000000Z",
    )
    (backup_dir / first.name).rename(backup_dir / old_first)
    (backup_dir / second.name).rename(backup_dir / old_second)
    broken = runner.Target(
        executor=target.executor,
        backup_dir=target.backup_dir,
        database=target.database,
        connection=target.connection,
        password="wrong-password-000",
        pg_bindir=target.pg_bindir,
    )
    for _ in range(2):
        with pytest.raises(BackupError):
            runner.take_backup(broken, FAST)
    result = runner.apply_retention(target, keep_count=1, max_age_days=1)
    assert result.removed == (old_first,)
    assert published(backup_dir) == [old_second]
    # The script itself refuses to remove the newest verified backup, whatever it is told.
    refused = runner.run_script(target, "remove", old_second)
    assert not refused.ok and "newest verified" in str(refused.data.get("error"))
    assert published(backup_dir) == [old_second]


INVENTORY = [
    ("verified", "20261101T000000Z"),
    ("verified", "20261120T000000Z"),
    ("verified", "20261125T000000Z"),
    ("unverified", "20261126T000000Z"),
    ("verified", "20261128T000000Z"),
    ("unverified", "20261130T000000Z"),
    ("temporary", "20261130T120000Z"),
]


@pytest.mark.parametrize(("keep", "days"), [(2, 0), (0, 10), (3, 20), (1, 1), (0, 0), (10, 3650)])
def test_the_script_prunes_exactly_what_the_python_plan_prunes(
    backup_target: MakeTarget,
    backup_dir: Path,
    pg_database: str,
    keep: int,
    days: int,
    testenv: Any,
) -> None:
    target = backup_target(pg_database)
    user_dir = backup_dir
    for state, stamp in INVENTORY:
        name = f"{target.database}-{stamp}"
        path = user_dir / (f".tmp-{name}" if state == "temporary" else name)
        (path / "dump").mkdir(parents=True)
        if state == "verified":
            (path / "manifest.json").write_text("{}\n")
        elif state == "unverified":
            (path / "manifest.json").write_text("{}\n")
            (path / BAD_MARKER).write_text("test\n")
    user = testenv._user("postgres")
    for path in [user_dir, *user_dir.rglob("*")]:
        os.chown(path, user.uid, user.gid)
    entries = runner.list_backups(target)
    assert sorted((e.state, e.name) for e in entries) == sorted(
        (s, (".tmp-" if s == "temporary" else "") + f"{target.database}-{t}") for s, t in INVENTORY
    )
    now = int(time.time())
    plan = plan_retention(entries, keep_count=keep, max_age_days=days, now=now)
    done = runner.run_script(
        target, "prune", extra_env={"MS5_KEEP_COUNT": str(keep), "MS5_MAX_AGE_DAYS": str(days)}
    )
    assert done.ok, done.stderr
    assert tuple(sorted(done.data["removed"])) == plan.prune
    assert tuple(done.data["swept"]) == plan.sweep
    assert published(user_dir) == sorted(plan.keep)


# --------------------------------------------------------------------------------------------------
# A migration's locks during a backup: bounded waits on both sides, one fails cleanly
# --------------------------------------------------------------------------------------------------


def test_a_backup_waits_a_bounded_time_for_a_migrations_lock_then_fails_cleanly(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path
) -> None:
    target = backup_target(ms5_database)
    with psycopg.connect(ms5_database) as migration:
        migration.execute("LOCK TABLE ms5.production_counts IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(BackupError) as info:
            runner.take_backup(target, FAST)
        waited = time.monotonic() - started
    assert "lock" in str(info.value).lower()
    assert waited < FAST.lock_wait_seconds + 30  # bounded by the lock wait, not by the migration
    assert published(backup_dir) == [] and leftovers(backup_dir) == []
    assert runner.take_backup(target, FAST).name in published(backup_dir)


def test_a_migration_fails_within_its_lock_timeout_while_a_backup_holds_locks(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path, tmp_path: Path
) -> None:
    target = backup_target(ms5_database)
    patient = runner.BackupSettings(jobs=1, lock_wait_seconds=60, timeout_seconds=300)
    results: list[Any] = []
    with psycopg.connect(ms5_database) as holder:
        # The backup locks tables in order; this lock keeps it waiting half-way, holding the
        # locks it already has.
        holder.execute("LOCK TABLE ms5.production_counts IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(
            target=lambda: results.append(_capture(lambda: runner.take_backup(target, patient)))
        )
        thread.start()
        locked = _wait_for_backup_lock(ms5_database, exclude="production_counts")
        migrations = tmp_path / "migrations"
        shutil.copytree(Path(__file__).parents[2] / "migrations", migrations)
        (migrations / "V9000__touch_a_backed_up_table.sql").write_text(
            sql.SQL("ALTER TABLE {} ADD COLUMN backup_race integer;\n")
            .format(sql.Identifier("ms5", locked))
            .as_string(None)
        )
        started = time.monotonic()
        with pytest.raises(MigrationLockError):
            run(
                ms5_database,
                load_directory(migrations),
                settings=RunnerSettings(
                    lock_timeout_ms=500, lock_retries=1, retry_backoff_seconds=0.05
                ),
            )
        assert time.monotonic() - started < 20
        holder.rollback()
    thread.join(120)
    [outcome] = results
    assert isinstance(outcome, runner.BackupOutcome), outcome
    assert published(backup_dir) == [outcome.name]


def _capture(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except BackupError as exc:
        return exc


def _wait_for_backup_lock(dsn: str, *, exclude: str) -> str:
    """A table of schema ms5 on which the backup's sessions hold a granted lock."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT c.relname FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE l.granted AND n.nspname = 'ms5' AND c.relkind = 'r' AND c.relname <> %s "
                "AND a.application_name IN ('pg_dump', 'ms5-backup') ORDER BY 1 LIMIT 1",
                (exclude,),
            ).fetchone()
            if row:
                return str(row[0])
            time.sleep(0.1)
    raise AssertionError("the backup never held a table lock")


# --------------------------------------------------------------------------------------------------
# One manifest format for the script and for Python
# --------------------------------------------------------------------------------------------------


def test_a_manifest_written_in_python_verifies_with_the_script(
    ms5_database: str, backup_target: MakeTarget, backup_dir: Path, testenv: Any
) -> None:
    target = backup_target(ms5_database)
    name = f"{target.database}-20261201T000000Z"
    folder = backup_dir / name
    folder.mkdir()
    user = testenv._user("postgres")
    os.chown(folder, user.uid, user.gid)
    params = conninfo_to_dict(ms5_database)
    dumped = testenv.run_in_root(
        [
            f"{ms5_testenv.PG_BINDIR}/pg_dump",
            "--format=directory",
            f"--file={testenv.in_root(folder)}/dump",
            f"--dbname={params['dbname']}",
        ],
        user="postgres",
        env={
            "PGHOST": str(params["host"]),
            "PGPORT": str(params["port"]),
            "PGUSER": str(params["user"]),
            "PGPASSWORD": str(params["password"]),
        },
    )
    assert dumped.returncode == 0, dumped.stderr
    with psycopg.connect(ms5_database, autocommit=True) as conn:
        cur = conn.execute(METADATA_SQL)
        while cur.nextset():
            pass
        meta_row = conn.execute("SELECT current_setting('ms5.backup_metadata')").fetchone()
    assert meta_row is not None
    manifest = Manifest(
        backup=name,
        database=target.database,
        files=host_listing(folder),
        started_at="2026-12-01T00:00:00Z",
        started_epoch=1796083200,
        finished_at="2026-12-01T00:00:01Z",
        finished_epoch=1796083201,
        label="",
        reason="written by Python",
        metadata=Metadata.from_json(json.loads(str(meta_row[0]))),
        pg_dump={"compression": "gzip", "jobs": 1, "version": "test"},
    )
    (folder / "manifest.json").write_text(manifest.dumps())
    assert runner.run_script(target, "verify", name).ok
    assert runner.verify_backup(target, name) == []
    drill = runner.restore_drill(target, FAST, name)
    assert drill.ok, drill.mismatches
    # A wrong checksum written by Python is caught by the script.
    entry = next(iter(manifest.files))
    wrong = {**manifest.files, entry: FileEntry(sha256="0" * 64, size=manifest.files[entry].size)}
    (folder / "manifest.json").write_text(Manifest(**{**manifest.__dict__, "files": wrong}).dumps())
    failed = runner.run_script(target, "verify", name)
    assert not failed.ok and entry in str(failed.data.get("error"))
