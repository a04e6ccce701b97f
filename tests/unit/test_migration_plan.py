"""The migration plan, with no database: names, checksums, statements, drift, order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ms5_components.errors import (
    MigrationDriftError,
    MigrationFileError,
    MigrationFileErrors,
    MigrationOrderError,
)
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import (
    HistoryRow,
    RepairEntry,
    checksum,
    load_directory,
    migrations_from_inputs,
    migrations_to_inputs,
    normalize_text,
    parse_filename,
    parse_migration,
    plan_run,
    split_statements,
)


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def errors_of(excinfo: pytest.ExceptionInfo[MigrationFileErrors]) -> list[str]:
    return [str(e) for e in excinfo.value.errors]


# ---- names and versions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "description"),
    [
        ("V1__init.sql", "1", "init"),
        ("V0007__machine_energy.sql", "7", "machine energy"),
        ("V2_1__fix-index.sql", "2.1", "fix-index"),
        ("V2.1.0__x.sql", "2.1", "x"),
    ],
)
def test_valid_names(name: str, version: str, description: str) -> None:
    assert parse_filename(name) == (version, description)


@pytest.mark.parametrize(
    "name",
    [
        "v1__lower.sql",
        "V1_init.sql",
        "V__x.sql",
        "Va__x.sql",
        "V1__.sql",
        "V1__has space.sql",
        "V1__x.SQL",
        "1__x.sql",
        "V1__x.sql.bak",
    ],
)
def test_malformed_names_are_refused_naming_the_file(name: str) -> None:
    with pytest.raises(MigrationFileError) as caught:
        parse_filename(name)
    assert caught.value.filename == name
    assert str(caught.value).startswith(f"{name}: is not a valid migration name")


def test_directory_reports_every_bad_file_at_once(tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {
            "V1__ok.sql": "SELECT 1;\n",
            "V1_missing_underscore.sql": "SELECT 1;\n",
            "V001__duplicate.sql": "SELECT 2;\n",
            "V3__empty.sql": "-- only a comment\n",
            "V4__latin1.sql": "SELECT 'caf\xe9';\n".encode("latin-1"),
            "README.md": "ignored",
            ".gitkeep": "",
        },
    )
    with pytest.raises(MigrationFileErrors) as caught:
        load_directory(directory)
    messages = errors_of(caught)
    assert any(
        m.startswith("V1_missing_underscore.sql: is not a valid migration name") for m in messages
    )
    assert any(
        m.startswith(
            (
                "V1__ok.sql: has version 1, already used by V001__duplicate.sql",
                "V001__duplicate.sql: has version 1, already used by V1__ok.sql",
            )
        )
        for m in messages
    )
    assert "V3__empty.sql: contains no SQL statement" in messages
    assert any(m.startswith("V4__latin1.sql: is not UTF-8 text") for m in messages)
    assert len(messages) == 4


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"README.md": "nothing here"})
    with pytest.raises(MigrationFileErrors, match="contains no migration"):
        load_directory(tmp_path)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationFileError, match="cannot be read as a migrations directory"):
        load_directory(tmp_path / "nope")


def test_unreadable_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"V1__a.sql": "SELECT 1;\n", "V2__b.sql": "SELECT 2;\n"})
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        # Tests run as root, which reads a mode-000 file anyway: simulate EACCES instead.
        if self.name == "V1__a.sql":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(MigrationFileErrors) as caught:
        load_directory(tmp_path)
    assert errors_of(caught) == [
        "V1__a.sql: cannot be read (Permission denied); fix its permissions"
    ]


def test_unreadable_entry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "V1__a_directory.sql").mkdir()
    with pytest.raises(MigrationFileErrors, match=r"V1__a_directory\.sql: is not a regular file"):
        load_directory(tmp_path)


def test_sorted_by_numeric_version(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"V10__b.sql": "SELECT 10;", "V9__a.sql": "SELECT 9;", "V9_1__c.sql": "SELECT 91;"},
    )
    assert [m.version for m in load_directory(tmp_path)] == ["9", "9.1", "10"]


# ---- checksums -------------------------------------------------------------------------------


def test_checksum_ignores_bom_and_line_endings() -> None:
    unix = normalize_text(b"SELECT 1;\nSELECT 2;\n", "V1__a.sql")
    windows = normalize_text(b"\xef\xbb\xbfSELECT 1;\r\nSELECT 2;\r\n", "V1__a.sql")
    assert checksum(unix) == checksum(windows)
    assert checksum(unix) != checksum(unix + " ")


# ---- statements ------------------------------------------------------------------------------


def test_splitter_understands_quotes_comments_and_dollar_quotes() -> None:
    text = (
        "-- header; not a statement\n"
        "CREATE TABLE \"we;ird\" (a text DEFAULT 'x;y''z');\n"
        "/* block ; /* nested ; */ still */ INSERT INTO t VALUES (E'a\\';b');\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$\nBEGIN\n  RETURN 1;\nEND\n$fn$;\n"
        "SELECT $$a;b$$, a$b FROM t\n"
    )
    statements = split_statements(text)
    assert [s.line for s in statements] == [2, 3, 4, 9]
    assert statements[0].sql == "CREATE TABLE \"we;ird\" (a text DEFAULT 'x;y''z')"
    assert statements[1].sql.startswith("INSERT INTO t VALUES")
    assert statements[2].sql.endswith("$fn$")
    assert statements[3].sql == "SELECT $$a;b$$, a$b FROM t"


def test_error_position_maps_to_a_file_line() -> None:
    statement = split_statements("\n\nSELECT 1,\n  2,\n  oops\n")[0]
    assert statement.line == 3
    assert statement.line_at(statement.sql.index("oops") + 1) == 5
    assert statement.line_at(None) == 3


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("SELECT 'open;\n", "unterminated string literal", 1),
        ("SELECT 1;\nSELECT $x$ never closed;\n", "unterminated $x$ dollar-quoted string", 2),
        ("/* open\n", "unterminated /* comment", 1),
        ("SELECT 1;\n\\connect other\n", "psql meta-command", 2),
    ],
)
def test_splitter_errors_name_the_line(text: str, message: str, line: int) -> None:
    with pytest.raises(MigrationFileError, match=re.escape(message)) as caught:
        split_statements(text, "V1__x.sql")
    assert caught.value.line == line


# ---- directives and transaction rules ------------------------------------------------------------


def test_transaction_directive() -> None:
    off = parse_migration(
        "V1__a.sql", "-- ms5:transaction=off\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
    )
    assert off.transactional is False
    on = parse_migration("V1__a.sql", "SELECT 1;\n")
    assert on.transactional is True


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "create unique index concurrently i on t (a)",
        "DROP INDEX CONCURRENTLY i",
        "VACUUM ANALYZE t",
        "CALL refresh_continuous_aggregate('r', NULL, NULL)",
        "CREATE MATERIALIZED VIEW r WITH (timescaledb.continuous) AS SELECT 1",
        "CREATE INDEX i ON t (a) WITH (timescaledb.transaction_per_chunk)",
    ],
)
def test_statements_that_need_autocommit_are_caught_in_transactional_files(statement: str) -> None:
    with pytest.raises(MigrationFileError, match="-- ms5:transaction=off") as caught:
        parse_migration("V1__a.sql", f"SELECT 1;\n{statement};\n")
    assert caught.value.line == 2
    parse_migration("V1__a.sql", f"-- ms5:transaction=off\n{statement};\n")


def test_continuous_aggregate_with_no_data_is_fine_in_a_transaction() -> None:
    parse_migration(
        "V1__a.sql",
        "CREATE MATERIALIZED VIEW r WITH (timescaledb.continuous) AS SELECT 1 WITH NO DATA;\n",
    )


@pytest.mark.parametrize("control", ["BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION", "END"])
def test_transaction_control_is_refused(control: str) -> None:
    with pytest.raises(MigrationFileError, match=f"contains transaction control \\({control}\\)"):
        parse_migration("V1__a.sql", f"SELECT 1;\n{control};\n")


def test_unknown_or_misplaced_directive_is_refused() -> None:
    with pytest.raises(MigrationFileError, match="unknown directive '-- ms5:transactional=no'"):
        parse_migration("V1__a.sql", "-- ms5:transactional=no\nSELECT 1;\n")
    with pytest.raises(MigrationFileError, match="directive after the first statement") as caught:
        parse_migration("V1__a.sql", "SELECT 1;\n-- ms5:transaction=off\n")
    assert caught.value.line == 2


def test_begin_atomic_bodies_are_refused_with_a_hint() -> None:
    with pytest.raises(MigrationFileError, match="dollar quotes"):
        parse_migration(
            "V1__a.sql",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n",
        )


# ---- resource inputs ---------------------------------------------------------------------------


def test_inputs_round_trip_and_are_deterministic(tmp_path: Path) -> None:
    write(tmp_path, {"V2__b.sql": "SELECT 2;\n", "V1__a.sql": "SELECT 1;\n"})
    migrations = load_directory(tmp_path)
    inputs = migrations_to_inputs(migrations)
    assert list(inputs) == ["V1__a.sql", "V2__b.sql"]
    assert inputs == migrations_to_inputs(load_directory(tmp_path))
    assert migrations_from_inputs(inputs) == migrations


def test_tampered_inputs_are_refused() -> None:
    inputs = migrations_to_inputs([parse_migration("V1__a.sql", "SELECT 1;\n")])
    inputs["V1__a.sql"]["checksum"] = "0" * 64
    with pytest.raises(MigrationFileErrors, match=r"V1__a\.sql: input checksum"):
        migrations_from_inputs(inputs)
    with pytest.raises(MigrationFileErrors, match="is empty"):
        migrations_from_inputs({})


# ---- planning against a history ------------------------------------------------------------------


def _history(*migrations: object, outcome: str = "applied") -> list[HistoryRow]:
    rows = []
    for m in migrations:
        rows.append(HistoryRow(m.version, m.description, m.checksum, outcome))  # type: ignore[attr-defined]
    return rows


def test_plan_pending_in_order() -> None:
    a = parse_migration("V1__a.sql", "SELECT 1;")
    b = parse_migration("V2__b.sql", "SELECT 2;")
    c = parse_migration("V10__c.sql", "SELECT 10;")
    plan = plan_run([c, a, b], _history(a))
    assert [m.version for m in plan.pending] == ["2", "10"]
    assert plan_run([a, b, c], _history(a, b, c)).is_noop


def test_plan_reports_every_drift_with_both_checksums() -> None:
    a = parse_migration("V1__a.sql", "SELECT 1;")
    b = parse_migration("V2__b.sql", "SELECT 2;")
    b_edited = parse_migration("V2__b.sql", "SELECT 22;")
    a_renamed = parse_migration("V1__renamed.sql", "SELECT 1;")
    with pytest.raises(MigrationDriftError) as caught:
        plan_run([a_renamed, b_edited], _history(a, b))
    kinds = {d.version: d.kind for d in caught.value.drifts}
    assert kinds == {"1": "renamed", "2": "changed"}
    message = str(caught.value)
    assert b.checksum in message and b_edited.checksum in message
    assert "V1__renamed.sql (version 1) was applied as V1__a.sql" in message


def test_plan_removed_file_is_drift_unless_repaired() -> None:
    a = parse_migration("V1__a.sql", "SELECT 1;")
    b = parse_migration("V2__b.sql", "SELECT 2;")
    with pytest.raises(
        MigrationDriftError, match=r"V2__b\.sql \(version 2\) was applied but its file is gone"
    ):
        plan_run([a], _history(a, b))
    plan = plan_run([a], _history(a, b), [RepairEntry.parse("2")])
    assert [(r.version, r.migration) for r in plan.repairs] == [("2", None)]


def test_pinned_repair_accepts_only_its_checksum() -> None:
    a = parse_migration("V1__a.sql", "SELECT 1;")
    edited = parse_migration("V1__a.sql", "SELECT 11;")
    other = parse_migration("V1__a.sql", "SELECT 111;")
    assert plan_run([edited], _history(a), [RepairEntry.parse(f"1:{edited.checksum}")]).repairs
    with pytest.raises(MigrationDriftError):
        plan_run([other], _history(a), [RepairEntry.parse(f"1:{edited.checksum}")])


def test_spent_repair_entries_are_reported() -> None:
    a = parse_migration("V1__a.sql", "SELECT 1;")
    plan = plan_run([a], _history(a), [RepairEntry.parse("V1")])
    assert plan.spent_repairs == ("1",)


@pytest.mark.parametrize("raw", ["", "x", "1:abc", "1:" + "G" * 64])
def test_bad_repair_entries(raw: str) -> None:
    with pytest.raises(ValueError, match=r"expected|64 lower-case hex"):
        RepairEntry.parse(raw)


def test_failed_row_is_retried_and_out_of_order_refused() -> None:
    a = parse_migration("V1__a.sql", "SELECT 1;")
    b = parse_migration("V2__b.sql", "-- ms5:transaction=off\nSELECT 2;")
    c = parse_migration("V3__c.sql", "SELECT 3;")
    plan = plan_run([a, b, c], [*_history(a), *_history(b, outcome="failed")])
    assert [m.version for m in plan.pending] == ["2", "3"]
    with pytest.raises(MigrationOrderError, match=r"V2__b\.sql: version below 3"):
        plan_run([a, b, c], _history(a, c))


# ---- the default schema ------------------------------------------------------------------------


def test_default_schema_loads() -> None:
    migrations = load_directory(repository_migrations_dir())
    assert [m.version for m in migrations] == ["1", "2", "3", "4", "5", "6", "7"]
    assert [m.transactional for m in migrations] == [True, True, True, True, True, False, True]


# ---- the program's MigrationSet (under mocks, no database) ---------------------------------------

MIGRATION_SET = "pulumi-python:dynamic/ms5:MigrationSet"


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_program_registers_one_migration_set_after_the_database(program, stack) -> None:
    run = program(stack)
    reg = run.one(MIGRATION_SET)
    assert reg.name == "migrations"
    assert reg.is_secret("dsn")
    assert reg.plain("database") == "ms5"
    assert reg.plain("provider_version") == "1"
    files = sorted(p.name for p in repository_migrations_dir().glob("V*.sql"))
    assert files, "the repository has no migration"
    assert sorted(reg.plain("migrations")) == files
    assert all(
        set(v) == {"checksum", "description", "sql", "transactional", "version"}
        for v in reg.plain("migrations").values()
    )
    # Nothing machine-specific in the inputs: no absolute path, no timestamp.
    assert str(repository_migrations_dir()) not in str(reg.plain("migrations"))
    assert run.depends_on(reg, run.by_name("timescaledb-container"))
    assert reg.plain("settings") == {
        "advisory_lock_wait_seconds": 300,
        "lock_retries": 3,
        "lock_timeout_ms": 5000,
        "statement_timeout_ms": 600000,
    }
    assert "schemaVersion" in run.exports


def test_program_passes_repair_entries_and_migrations_dir(program, tmp_path: Path) -> None:
    write(tmp_path, {"V1__only.sql": "SELECT 1;\n"})
    run = program(
        "staging",
        {"ms5:migrationsDir": str(tmp_path), "ms5:migrationRepair": ["V3", "2:" + "a" * 64]},
    )
    reg = run.one(MIGRATION_SET)
    assert list(reg.plain("migrations")) == ["V1__only.sql"]
    assert reg.plain("repair") == ["2:" + "a" * 64, "3"]


def test_program_fails_naming_a_bad_migration_file(program, tmp_path: Path) -> None:
    write(tmp_path, {"V1__ok.sql": "SELECT 1;\n", "V2-bad.sql": "SELECT 2;\n"})
    with pytest.raises(Exception, match=r"V2-bad\.sql: is not a valid migration name"):
        program("staging", {"ms5:migrationsDir": str(tmp_path)})
