"""The migration plan's rules, each pinned with its exact outcome: versions, statement splitting
(as PostgreSQL's lexer splits), directives, inputs, and what a run against a history decides."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ms5_components.errors import (
    Drift,
    MigrationDriftError,
    MigrationFileError,
    MigrationFileErrors,
    MigrationOrderError,
)
from ms5_components.migrations.plan import (
    HistoryRow,
    Migration,
    Repair,
    RepairEntry,
    Statement,
    checksum,
    format_version,
    load_directory,
    migrations_from_inputs,
    migrations_to_inputs,
    needs_autocommit,
    normalize_text,
    parse_filename,
    parse_migration,
    parse_version,
    plan_run,
    split_statements,
    transaction_control,
    version_key,
)


def sqls(text: str) -> list[str]:
    return [s.sql for s in split_statements(text)]


def file_error(text: str) -> MigrationFileError:
    with pytest.raises(MigrationFileError) as caught:
        split_statements(text, "V1__x.sql")
    return caught.value


# ---- versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("7", (7,)),
        ("0007", (7,)),
        ("2_1", (2, 1)),
        ("2.1", (2, 1)),
        ("2.1.0", (2, 1)),
        ("1.0", (1,)),  # trailing .0 parts are dropped ...
        ("1_0_0", (1,)),
        ("0", (0,)),  # ... but never the last part
        ("0.0", (0,)),
        ("1.0.2", (1, 0, 2)),  # inner zeros stay
    ],
)
def test_versions(raw, key):
    assert parse_version(raw) == key
    assert version_key(format_version(key)) == key


@pytest.mark.parametrize("raw", ["", "a", "1..2", "1.", ".1", "1-2", "1 2", "v1"])
def test_malformed_versions(raw):
    with pytest.raises(ValueError) as caught:
        parse_version(raw)
    assert str(caught.value) == (f"malformed version {raw!r}: expected numbers separated by . or _")


def test_format_version():
    assert format_version((2, 1)) == "2.1"
    assert format_version((7,)) == "7"


def test_versions_sort_numerically():
    assert sorted(["10", "9", "9.1", "1.10", "1.9"], key=version_key) == [
        "1.9",
        "1.10",
        "9",
        "9.1",
        "10",
    ]


def test_file_names():
    assert parse_filename("V1.0__first_table.sql") == ("1", "first table")
    assert parse_filename("V0012_3__a-b_c.sql") == ("12.3", "a-b c")
    with pytest.raises(MigrationFileError) as caught:
        parse_filename("V1__-x.sql")
    assert str(caught.value) == (
        "V1__-x.sql: is not a valid migration name; expected V<version>__<description>.sql, e.g. "
        "V0007__machine_energy.sql (version: numbers separated by . or _; description: "
        "letters, digits, _ and -)"
    )


# ---- text and checksum -----------------------------------------------------------------------


def test_normalized_text():
    assert normalize_text(b"\xef\xbb\xbfa\r\nb\rc\n", "V1__a.sql") == "a\nb\nc\n"
    # only a leading BOM is removed
    assert normalize_text("a\ufeffb".encode(), "V1__a.sql") == "a\ufeffb"


def test_non_utf8_text_names_the_byte():
    with pytest.raises(MigrationFileError) as caught:
        normalize_text(b"SELECT '\xe9';", "V4__latin1.sql")
    assert str(caught.value) == "V4__latin1.sql: is not UTF-8 text (byte 8); save it as UTF-8"
    assert caught.value.filename == "V4__latin1.sql"


def test_checksum_is_the_sha256_of_the_utf8_text():
    text = "SELECT 'café';\n"
    assert checksum(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- statement splitting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a lone - or / is an operator, not the start of a comment
        ("SELECT 1 - 2; SELECT 3;", ["SELECT 1 - 2", "SELECT 3"]),
        ("SELECT 4 / 2; SELECT 5;", ["SELECT 4 / 2", "SELECT 5"]),
        ("SELECT 6 -\n2; SELECT 7 /\n2;", ["SELECT 6 -\n2", "SELECT 7 /\n2"]),
        ("SELECT 8 * 2 / 4 - 1; SELECT '*/';", ["SELECT 8 * 2 / 4 - 1", "SELECT '*/'"]),
        ("SELECT 1 -", ["SELECT 1 -"]),
        ("SELECT 1 /", ["SELECT 1 /"]),
        ("SELECT -1;", ["SELECT -1"]),
        # -- comments run to the end of the line, also on the last line
        ("SELECT 1; -- trailing; not a statement", ["SELECT 1"]),
        ("SELECT 1;\n--", ["SELECT 1"]),
        ("SELECT 1 -- a; b\n, 2;", ["SELECT 1 -- a; b\n, 2"]),
        ("SELECT '--'; SELECT 2;", ["SELECT '--'", "SELECT 2"]),
        # block comments, nested, right before or after a token
        ("/**/SELECT 1;", ["SELECT 1"]),
        ("/* c */SELECT 1;", ["SELECT 1"]),
        ("/* a */ SELECT 1;", ["SELECT 1"]),
        ("/* a /* b; */ c; */ SELECT 1;", ["SELECT 1"]),
        ("SELECT 1/* ; */; SELECT 2;", ["SELECT 1/* ; */", "SELECT 2"]),
        # strings: '' doubling, E'' escapes only after a standalone E
        ("SELECT ''; SELECT 2;", ["SELECT ''", "SELECT 2"]),
        ("SELECT 'a';SELECT 2;", ["SELECT 'a'", "SELECT 2"]),
        ("SELECT 'it''s', 'x'''; SELECT 2;", ["SELECT 'it''s', 'x'''", "SELECT 2"]),
        ("SELECT 'a',' b'; SELECT 2;", ["SELECT 'a',' b'", "SELECT 2"]),
        ("SELECT 1, 'C:\\'; SELECT 2;", ["SELECT 1, 'C:\\'", "SELECT 2"]),
        ("SELECT 'C:\\'; SELECT 2;", ["SELECT 'C:\\'", "SELECT 2"]),
        ("SELECT E'a\\'b'; SELECT 2;", ["SELECT E'a\\'b'", "SELECT 2"]),
        ("SELECT e'ab\\'c'; SELECT 2;", ["SELECT e'ab\\'c'", "SELECT 2"]),
        ("SELECT E'\\''; SELECT 2;", ["SELECT E'\\''", "SELECT 2"]),
        ("SELECT E'\\\\'; SELECT 2;", ["SELECT E'\\\\'", "SELECT 2"]),
        ("E'a\\';b'; SELECT 2;", ["E'a\\';b'", "SELECT 2"]),
        ("'x\\'; SELECT 1 AS e", ["'x\\'", "SELECT 1 AS e"]),
        ("SELECT date'2020\\'; SELECT 2;", ["SELECT date'2020\\'", "SELECT 2"]),
        ("de'x\\'; SELECT 2;", ["de'x\\'", "SELECT 2"]),
        ("SELECT X'\\'; SELECT 2;", ["SELECT X'\\'", "SELECT 2"]),
        ("SELECT E'a''\\'b'; SELECT 2;", ["SELECT E'a''\\'b'", "SELECT 2"]),
        ("SELECT 'a'", ["SELECT 'a'"]),
        # quoted identifiers, "" doubling
        ('SELECT "a"; SELECT "b";', ['SELECT "a"', 'SELECT "b"']),
        ('SELECT "a";SELECT 2;', ['SELECT "a"', "SELECT 2"]),
        ('SELECT "a""b;c"; SELECT 2;', ['SELECT "a""b;c"', "SELECT 2"]),
        ('SELECT "a""b"; SELECT "c";', ['SELECT "a""b"', 'SELECT "c"']),
        ('SELECT "x"""; SELECT 2;', ['SELECT "x"""', "SELECT 2"]),
        ('SELECT 1 AS ""; SELECT 2;', ['SELECT 1 AS ""', "SELECT 2"]),
        ('SELECT "a"', ['SELECT "a"']),
        # dollar quotes; $ inside an identifier or as a parameter is no quote
        ("SELECT $$a$$; SELECT $$b$$;", ["SELECT $$a$$", "SELECT $$b$$"]),
        ("$$a;b$$;SELECT 2", ["$$a;b$$", "SELECT 2"]),
        ("SELECT $t$ $$; $t$; SELECT 2;", ["SELECT $t$ $$; $t$", "SELECT 2"]),
        ("SELECT a$b$c; SELECT 2;", ["SELECT a$b$c", "SELECT 2"]),
        ("SELECT 1$a$; SELECT 2;", ["SELECT 1$a$", "SELECT 2"]),  # a digit is part of a word
        ("PREPARE p AS SELECT $1; SELECT 2;", ["PREPARE p AS SELECT $1", "SELECT 2"]),
        # white space, empty statements, a backslash that starts no line
        ("  SELECT 1;\n\tSELECT 2;\n SELECT 3;", ["SELECT 1", "SELECT 2", "SELECT 3"]),
        ("SELECT 1;\nXMLCOMMENT('a');", ["SELECT 1", "XMLCOMMENT('a')"]),
        (";;SELECT 1;;", ["SELECT 1"]),
        ("SELECT 1   \n\n;", ["SELECT 1"]),
        ("SELECT 1 \\ 2;", ["SELECT 1 \\ 2"]),
        ("", []),
        ("-- only a comment\n", []),
    ],
)
def test_splitting(text, expected):
    assert sqls(text) == expected


def test_statement_lines_count_every_newline():
    text = (
        "/* one\ntwo */ SELECT 1;\n"  # starts on line 2
        "SELECT 'a\nb';\n"  # line 3, string over 2 lines
        'SELECT "c\nd";\n'  # line 5
        "SELECT $$e\nf$$;\n"  # line 7
        "SELECT E'g\\\nh';\n"  # line 9
        "-- x\n"
        "\n"
        "SELECT 6;"  # line 13
    )
    assert [s.line for s in split_statements(text)] == [2, 3, 5, 7, 9, 13]


def test_words_are_upper_case_outside_strings_and_comments():
    (statement,) = split_statements(
        "create index concurrently i on t (a) -- tail\n/* x */ where _b$1 = 'lit' and \"Q\" = $$d$$"
    )
    assert statement.words == "CREATE INDEX CONCURRENTLY I ON T ( A WHERE _B$1 AND"
    assert statement.line == 1
    (call,) = split_statements("SELECT _timescaledb_functions.x(1)")
    assert call.words == "SELECT _TIMESCALEDB_FUNCTIONS X ("


def test_line_at_maps_error_positions():
    (statement,) = split_statements("\nSELECT 1,\n2,\n  x")
    assert statement.line == 2
    assert statement.sql == "SELECT 1,\n2,\n  x"
    assert statement.line_at(None) == 2
    assert statement.line_at(0) == 2
    assert statement.line_at(-3) == 2
    assert statement.line_at(1) == 2
    assert statement.line_at(statement.sql.index(",") + 1) == 2  # the char before a newline
    assert statement.line_at(statement.sql.index("2") + 1) == 3  # the first char after one
    assert statement.line_at(statement.sql.index("x") + 1) == 4


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("SELECT 'open;\n", "has an unterminated string literal", 1),
        ("SELECT 1;\n\nSELECT 'a\nb", "has an unterminated string literal", 3),
        ("SELECT E'a\\';", "has an unterminated string literal", 1),
        ("SELECT 1;\nSELECT 'a\nb''", "has an unterminated string literal", 2),
        ('SELECT 1;\nSELECT "a\nb""', "has an unterminated quoted identifier", 2),
        ('SELECT 1;\nSELECT "open', "has an unterminated quoted identifier", 2),
        (
            "SELECT 1;\nSELECT $x$ never closed;\n",
            "has an unterminated $x$ dollar-quoted string",
            2,
        ),
        ("SELECT 1; /*", "has an unterminated /* comment", 1),
        ("SELECT 1;\n/* a /* b */\n", "has an unterminated /* comment", 2),
        (
            "\\connect other\n",
            "contains a psql meta-command; only SQL is supported (remove the line)",
            1,
        ),
        (
            "SELECT 1;\n  \t\\set x 1\n",
            "contains a psql meta-command; only SQL is supported (remove the line)",
            2,
        ),
    ],
)
def test_splitter_errors_name_file_and_line(text, message, line):
    error = file_error(text)
    assert (error.filename, error.line, error.reason) == ("V1__x.sql", line, message)
    assert str(error) == f"V1__x.sql:{line}: {message}"


def test_default_file_name_in_errors():
    with pytest.raises(MigrationFileError) as caught:
        split_statements("SELECT 'x")
    assert caught.value.filename == "<sql>"


# ---- classification ----------------------------------------------------------------------------


def _statement(sql: str) -> Statement:
    (statement,) = split_statements(sql)
    return statement


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("BEGIN", "BEGIN"),
        ("begin transaction isolation level serializable", "BEGIN"),
        ("COMMIT", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("ABORT", "ABORT"),
        ("END", "END"),
        ("SAVEPOINT s", "SAVEPOINT"),
        ("RELEASE SAVEPOINT s", "RELEASE"),
        ("START TRANSACTION", "START TRANSACTION"),
        ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
        ("SELECT 1", None),
        ("PREPARE p AS SELECT 1", None),
        ("BEGINS", None),  # whole words only
        ("COMMITTED", None),
        ("CREATE FUNCTION f() AS $$ BEGIN END $$ LANGUAGE plpgsql", None),
    ],
)
def test_transaction_control(sql, keyword):
    assert transaction_control(_statement(sql)) == keyword


@pytest.mark.parametrize(
    ("sql", "label"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", "CREATE INDEX CONCURRENTLY"),
        ("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", "CREATE INDEX CONCURRENTLY"),
        ("CREATE INDEX i ON t (a)", None),
        ("DROP INDEX CONCURRENTLY i", "DROP INDEX CONCURRENTLY"),
        ("DROP INDEX i", None),
        ("REINDEX TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY"),
        ("REINDEX TABLE t", None),
        ("VACUUM", "VACUUM"),
        ("VACUUM (ANALYZE) t", "VACUUM"),
        ("VACUUMX", None),
        ("CREATE DATABASE d", "CREATE/DROP DATABASE"),
        ("DROP DATABASE d", "CREATE/DROP DATABASE"),
        ("CREATE TABLESPACE s LOCATION '/x'", "CREATE/DROP TABLESPACE"),
        ("DROP TABLESPACE s", "CREATE/DROP TABLESPACE"),
        ("ALTER SYSTEM SET work_mem = '1MB'", "ALTER SYSTEM"),
        ("ALTER TABLE t SET (fillfactor = 50)", None),
        ("CALL refresh_continuous_aggregate('r', NULL, NULL)", "CALL refresh_continuous_aggregate"),
        (
            "CALL public.refresh_continuous_aggregate('r', NULL, NULL)",
            "CALL refresh_continuous_aggregate",
        ),
        ("CALL run_job(1000)", "CALL run_job"),
        ("CALL _timescaledb_functions.run_job(1000)", "CALL run_job"),
        ("CALL my_proc()", None),
        (
            "CREATE INDEX i ON t (a) WITH (timescaledb.transaction_per_chunk)",
            "CREATE INDEX ... WITH (timescaledb.transaction_per_chunk)",
        ),
        (
            "CREATE MATERIALIZED VIEW r WITH (timescaledb.continuous) AS SELECT 1",
            "a continuous aggregate created WITH DATA (the default)",
        ),
        (
            "CREATE MATERIALIZED VIEW r WITH (timescaledb.continuous) AS SELECT 1 WITH DATA",
            "a continuous aggregate created WITH DATA (the default)",
        ),
        ("CREATE MATERIALIZED VIEW r WITH (timescaledb.continuous) AS SELECT 1 WITH NO DATA", None),
        ("CREATE MATERIALIZED VIEW r AS SELECT 1", None),  # a plain view is fine
    ],
)
def test_needs_autocommit(sql, label):
    assert needs_autocommit(_statement(sql)) == label


# ---- parsing a migration -----------------------------------------------------------------------


def test_parsed_migration_fields():
    text = "-- header\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n"
    m = parse_migration("V0003__machine_energy.sql", text)
    assert (m.version, m.description, m.filename) == (
        "3",
        "machine energy",
        "V0003__machine_energy.sql",
    )
    assert (m.checksum, m.sql, m.transactional) == (checksum(text), text, True)
    assert [(s.sql, s.line) for s in m.statements] == [
        ("CREATE TABLE t (a int)", 2),
        ("INSERT INTO t VALUES (1)", 3),
    ]
    assert m.key == (3,)
    assert m.to_input() == {
        "checksum": checksum(text),
        "description": "machine energy",
        "sql": text,
        "transactional": True,
        "version": "3",
    }


@pytest.mark.parametrize(
    ("header", "transactional"),
    [
        ("-- ms5:transaction=off\n", False),
        ("--ms5:transaction=OFF\n", False),
        ("--  ms5:transaction = off  \n", False),
        ("   -- ms5:transaction=off\n", False),
        ("-- ms5:transaction=on\n", True),
        ("-- ms5:transaction=On\n", True),
        ("-- ms5:transaction=off\n-- ms5:transaction=on\n", True),  # the last one counts
        ("-- a comment\n\n-- ms5:transaction=off\n", False),
        ("/* block */\n-- ms5:transaction=off\n", False),
        ("-- ms5:\n", True),  # nothing after the colon: no directive
        ("-- not ms5:transaction=off\n", True),
        ("", True),
    ],
)
def test_transaction_directive(header, transactional):
    m = parse_migration("V1__a.sql", f"{header}SELECT 1;\n")
    assert m.transactional is transactional


def _parse_error(text: str) -> MigrationFileError:
    with pytest.raises(MigrationFileError) as caught:
        parse_migration("V1__a.sql", text)
    assert caught.value.filename == "V1__a.sql"
    return caught.value


def test_directive_errors_name_the_line():
    unknown = _parse_error("-- a\n-- ms5:transactional=no\nSELECT 1;\n")
    assert (unknown.line, unknown.reason) == (
        2,
        "has an unknown directive '-- ms5:transactional=no'; the only directive is "
        "'-- ms5:transaction=off'",
    )
    late = _parse_error("SELECT 1;\n-- ms5:transaction=off\n")
    assert (late.line, late.reason) == (
        2,
        "has a directive after the first statement; move it to the header",
    )
    # a comment after a statement on its line is no directive
    assert parse_migration("V1__a.sql", "SELECT 1; -- ms5:transaction=off\n").transactional


def test_splitting_errors_name_the_migration_file():
    error = _parse_error("SELECT 1;\nSELECT 'open\n")
    assert (error.line, error.reason) == (2, "has an unterminated string literal")


def test_directive_on_the_line_before_the_first_statement_is_in_the_header():
    m = parse_migration("V1__a.sql", "\n-- ms5:transaction=off\nSELECT 1;\n")
    assert m.transactional is False


def test_content_errors_name_the_statement_line():
    empty = _parse_error("-- nothing\n/* here */\n")
    assert (empty.line, empty.reason) == (None, "contains no SQL statement")
    atomic = _parse_error(
        "SELECT 1;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1; END;\n"
    )
    assert (atomic.line, atomic.reason) == (
        2,
        "uses a SQL-standard function body (BEGIN ATOMIC ... END), which the statement "
        "splitter cannot see the end of; write the body with dollar quotes ($$ ... $$)",
    )
    control = _parse_error("SELECT 1;\n\nCOMMIT;\n")
    assert (control.line, control.reason) == (
        3,
        "contains transaction control (COMMIT); the runner runs each migration in its own "
        "transaction (or, with '-- ms5:transaction=off', each statement on its own): remove it",
    )
    autocommit = _parse_error("SELECT 1;\nSELECT 2;\nVACUUM t;\n")
    assert (autocommit.line, autocommit.reason) == (
        3,
        "runs VACUUM, which cannot run inside a transaction: put it in a migration whose header "
        "says '-- ms5:transaction=off'",
    )


def test_transaction_control_is_refused_also_outside_a_transaction():
    error = _parse_error("-- ms5:transaction=off\nSELECT 1;\nBEGIN;\n")
    assert error.line == 3
    assert error.reason.startswith("contains transaction control (BEGIN)")


def test_statements_needing_autocommit_run_in_non_transactional_files():
    m = parse_migration("V1__a.sql", "-- ms5:transaction=off\nVACUUM t;\nCREATE DATABASE d;\n")
    assert m.transactional is False
    assert len(m.statements) == 2


# ---- directories -------------------------------------------------------------------------------


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content)
    return directory


def _errors(directory: Path) -> list[str]:
    with pytest.raises(MigrationFileErrors) as caught:
        load_directory(directory)
    return [str(e) for e in caught.value.errors]


def test_what_a_directory_reader_ignores_and_what_it_refuses(tmp_path):
    write(
        tmp_path,
        {
            ".V9__hidden.sql": "SELECT 9;",  # dot files are ignored
            "README.md": "notes",
            "V1__ok.sql": "SELECT 1;",
            "V5__notes.txt": "not sql",  # looks like a migration: refused
            "notes.sql": "SELECT 5;",  # a .sql file: refused
            "schema.SQL": "SELECT 6;",
            "v7__lower.sql": "SELECT 7;",
        },
    )
    assert _errors(tmp_path) == [
        f"{name}: is not a valid migration name; expected V<version>__<description>.sql, e.g. "
        "V0007__machine_energy.sql (version: numbers separated by . or _; description: letters, "
        "digits, _ and -)"
        for name in ("V5__notes.txt", "notes.sql", "schema.SQL", "v7__lower.sql")
    ]


def test_only_ignored_files_is_no_migration(tmp_path):
    write(tmp_path, {".V1__hidden.sql": "SELECT 1;", "README.md": "x"})
    assert _errors(tmp_path) == [
        f"{tmp_path}: contains no migration (V<version>__<description>.sql); the database would "
        "be left without a schema"
    ]


def test_every_file_after_an_ignored_or_bad_one_is_still_read(tmp_path):
    (tmp_path / "V1__dir.sql").mkdir()
    write(tmp_path, {".a": "", "README": "x", "V2__ok.sql": "SELECT 2;", "V3__bad.sql": "-- empty"})
    assert _errors(tmp_path) == [
        "V1__dir.sql: is not a regular file",
        "V3__bad.sql: contains no SQL statement",
    ]
    (tmp_path / "V1__dir.sql").rmdir()
    (tmp_path / "V3__bad.sql").write_text("SELECT 3;")
    assert [m.filename for m in load_directory(tmp_path)] == ["V2__ok.sql", "V3__bad.sql"]


def test_missing_directory_message(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(MigrationFileError) as caught:
        load_directory(missing)
    assert str(caught.value) == (
        f"{missing}: cannot be read as a migrations directory (No such file or directory); "
        "check ms5:migrationsDir"
    )


def test_every_duplicate_version_is_reported(tmp_path):
    write(
        tmp_path,
        {
            "V1__a.sql": "SELECT 1;",
            "V01__b.sql": "SELECT 1;",
            "V2__c.sql": "SELECT 2;",
            "V2.0__d.sql": "SELECT 2;",
            "V3__e.sql": "SELECT 3;",
        },
    )
    assert _errors(tmp_path) == [
        "V1__a.sql: has version 1, already used by V01__b.sql; give one of them the next free "
        "version",
        "V2__c.sql: has version 2, already used by V2.0__d.sql; give one of them the next free "
        "version",
    ]


# ---- resource inputs ---------------------------------------------------------------------------


def _inputs(*files: tuple[str, str]) -> dict[str, dict[str, object]]:
    return migrations_to_inputs([parse_migration(name, text) for name, text in files])


def test_inputs_are_keyed_and_sorted_by_file_name():
    inputs = _inputs(("V10__b.sql", "SELECT 10;"), ("V9__a.sql", "SELECT 9;"))
    assert list(inputs) == ["V10__b.sql", "V9__a.sql"]
    assert [m.version for m in migrations_from_inputs(inputs)] == ["9", "10"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("checksum", "0" * 64, "input checksum '" + "0" * 64 + "' does not match the file"),
        ("version", "2", "input version '2' does not match the file ('1')"),
        ("description", "b", "input description 'b' does not match the file ('a')"),
        ("transactional", False, "input transactional False does not match the file (True)"),
    ],
)
def test_tampered_inputs_are_refused_naming_the_key(key, value, expected):
    inputs = _inputs(("V1__a.sql", "SELECT 1;"))
    inputs["V1__a.sql"][key] = value
    with pytest.raises(MigrationFileErrors) as caught:
        migrations_from_inputs(inputs)
    (error,) = caught.value.errors
    assert error.filename == "V1__a.sql"
    assert error.reason.startswith(expected)


def test_inputs_with_only_sql_are_accepted():
    (m,) = migrations_from_inputs({"V1__a.sql": {"sql": "SELECT 1;"}})
    assert (m.version, m.transactional) == ("1", True)


@pytest.mark.parametrize("entry", ["SELECT 1;", {"sql": 5}, {}, None])
def test_inputs_without_sql_text_are_refused(entry):
    with pytest.raises(MigrationFileErrors) as caught:
        migrations_from_inputs({"V1__a.sql": entry})
    assert [str(e) for e in caught.value.errors] == [
        "V1__a.sql: has no SQL text in the resource input"
    ]


def test_bad_inputs_are_reported_together():
    with pytest.raises(MigrationFileErrors) as caught:
        migrations_from_inputs(
            {
                "V1__a.sql": {"sql": "SELECT 1;"},
                "V01__b.sql": {"sql": "SELECT 1;"},
                "V2__c.sql": {},
            }
        )
    assert [str(e) for e in caught.value.errors] == [
        "V2__c.sql: has no SQL text in the resource input",
        "V1__a.sql: has version 1, already used by V01__b.sql; give one of them the next free "
        "version",
    ]


def test_empty_inputs_are_refused():
    with pytest.raises(MigrationFileErrors) as caught:
        migrations_from_inputs({})
    assert [str(e) for e in caught.value.errors] == [
        "migrations: is empty; expected at least one migration file"
    ]


# ---- repair entries ----------------------------------------------------------------------------

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("raw", "version", "digest", "text"),
    [
        ("3", "3", None, "3"),
        ("V3", "3", None, "3"),
        ("v0003", "3", None, "3"),
        (" 2.1.0 ", "2.1", None, "2.1"),
        (f"3:{HEX}", "3", HEX, f"3:{HEX}"),
        (f"V3:{HEX}", "3", HEX, f"3:{HEX}"),
    ],
)
def test_repair_entries(raw, version, digest, text):
    entry = RepairEntry.parse(raw)
    assert entry == RepairEntry(version=version, checksum=digest)
    assert str(entry) == text


@pytest.mark.parametrize("raw", ["", "x", "V", "X3", "3x", ":" + HEX])
def test_repair_entry_needs_a_version(raw):
    with pytest.raises(ValueError) as caught:
        RepairEntry.parse(raw)
    assert str(caught.value) == (
        f"{raw!r}: expected <version> or <version>:<sha256>, e.g. 3 or 3:<64 hex> (the drift "
        "message prints the exact entry)"
    )


@pytest.mark.parametrize("digest", ["", "abc", HEX.upper(), HEX + "0", HEX[:-1] + "g"])
def test_repair_entry_checksum_is_64_lower_case_hex(digest):
    with pytest.raises(ValueError) as caught:
        RepairEntry.parse(f"3:{digest}")
    assert (
        str(caught.value)
        == f"'3:{digest}': the checksum after ':' must be 64 lower-case hex digits"
    )


# ---- planning ------------------------------------------------------------------------------------


def m(version: str, sql: str | None = None, name: str = "x") -> Migration:
    return parse_migration(f"V{version}__{name}.sql", sql or f"SELECT {version.replace('.', '')};")


def row(migration: Migration, outcome: str = "applied", **changes: str) -> HistoryRow:
    values = {
        "version": migration.version,
        "description": migration.description,
        "checksum": migration.checksum,
    }
    values.update(changes)
    return HistoryRow(outcome=outcome, **values)


def drifts(migrations, history, repairs=()) -> list[Drift]:
    with pytest.raises(MigrationDriftError) as caught:
        plan_run(migrations, history, repairs)
    return caught.value.drifts


def test_a_fresh_database_runs_everything_in_order():
    a, b, c = m("1"), m("2"), m("10")
    plan = plan_run([c, a, b], [])
    assert plan.pending == (a, b, c)
    assert (plan.repairs, plan.spent_repairs, plan.is_noop) == ((), (), False)


def test_nothing_to_do():
    a = m("1")
    plan = plan_run([a], [row(a)])
    assert (plan.pending, plan.repairs, plan.spent_repairs) == ((), (), ())
    assert plan.is_noop


def test_a_retired_migration_whose_file_reappears_is_refused():
    a, b = m("1"), m("2")
    retired = row(b, "retired", checksum="c" * 64)
    assert drifts([a, b], [row(a), retired]) == [
        Drift(
            version="2",
            filename="V2__x.sql",
            recorded="c" * 64,
            current=b.checksum,
            kind="reappeared",
        )
    ]
    # not even a repair entry brings it back: the history says it was removed on purpose
    assert [d.kind for d in drifts([a, b], [row(a), retired], [RepairEntry.parse("2")])] == [
        "reappeared"
    ]
    with pytest.raises(MigrationDriftError) as caught:
        plan_run([a, b], [row(a), retired])
    assert "V2__x.sql (version 2) was retired but its file is back" in str(caught.value)


def test_a_retired_migration_stays_retired():
    a, b = m("1"), m("2")
    plan = plan_run([a], [row(a), row(b, "retired")])
    assert plan.is_noop
    plan = plan_run([a, m("3")], [row(a), row(b, "retired")])
    assert [x.version for x in plan.pending] == ["3"]


def test_rows_after_a_failed_or_retired_one_are_still_checked():
    a, b, c = m("1"), m("2"), m("3")
    edited = m("3", "SELECT 33;")
    found = drifts([a, b, edited], [row(a, "failed"), row(b, "retired", checksum="d" * 64), row(c)])
    assert [(d.version, d.kind) for d in found] == [("2", "reappeared"), ("3", "changed")]


def test_every_kind_of_drift_carries_both_checksums():
    a, b, c = m("1"), m("2"), m("9", name="machine_energy")
    edited_a = m("1", "SELECT 11;")
    renamed_b = m("2", name="renamed")
    found = drifts([edited_a, renamed_b], [row(a), row(b), row(c, "applied_with_warnings")])
    assert found == [
        Drift(
            version="1",
            filename="V1__x.sql",
            recorded=a.checksum,
            current=edited_a.checksum,
            kind="changed",
        ),
        Drift(
            version="2",
            filename="V2__renamed.sql",
            recorded=b.checksum,
            current=b.checksum,
            kind="renamed",
            recorded_name="V2__x.sql",
        ),
        Drift(
            version="9",
            filename="V9__machine_energy.sql",
            recorded=c.checksum,
            current=None,
            kind="removed",
        ),
    ]


def test_drifts_are_in_numeric_version_order():
    nine, ten = m("9"), m("10")
    found = drifts([], [row(ten), row(nine)])
    assert [d.version for d in found] == ["9", "10"]


def test_repairs_rebaseline_exactly_the_named_rows():
    a, b, c = m("1"), m("2"), m("3")
    edited_a = m("1", "SELECT 11;")
    plan = plan_run(
        [edited_a, b],
        [row(a), row(b), row(c)],
        [
            RepairEntry.parse(f"1:{edited_a.checksum}"),
            RepairEntry.parse("3"),
            RepairEntry.parse("7"),
        ],
    )
    assert plan.repairs == (
        Repair(version="1", old_checksum=a.checksum, migration=edited_a),
        Repair(version="3", old_checksum=c.checksum, migration=None),
    )
    assert plan.spent_repairs == ("7",)
    assert plan.pending == ()
    assert not plan.is_noop  # a repair is work


def test_a_repair_pinned_to_another_checksum_accepts_nothing():
    a = m("1")
    edited = m("1", "SELECT 11;")
    found = drifts([edited], [row(a)], [RepairEntry.parse(f"1:{'0' * 64}")])
    assert [d.kind for d in found] == ["changed"]
    # a pinned entry cannot accept a removal either
    assert [d.kind for d in drifts([], [row(a)], [RepairEntry.parse(f"1:{a.checksum}")])] == [
        "removed"
    ]


def test_a_repair_for_one_version_does_not_accept_another():
    a, b = m("1"), m("2")
    found = drifts([], [row(a), row(b)], [RepairEntry.parse("2")])
    assert [(d.version, d.kind) for d in found] == [("1", "removed")]


def test_spent_repairs_are_sorted():
    a = m("1")
    plan = plan_run([a], [row(a)], [RepairEntry.parse("5"), RepairEntry.parse(f"1:{HEX}")])
    assert plan.spent_repairs == (f"1:{HEX}", "5")


def test_a_failed_migration_is_retried_even_below_the_highest_applied():
    a = m("1")
    b = parse_migration("V2__b.sql", "-- ms5:transaction=off\nSELECT 2;")
    c = m("3")
    plan = plan_run([a, b, c], [row(a), row(b, "failed"), row(c)])
    assert plan.pending == (b,)
    # the failed row's file may have been fixed meanwhile: no drift for it
    fixed = parse_migration("V2__b.sql", "-- ms5:transaction=off\nSELECT 22;")
    assert plan_run([a, fixed, c], [row(a), row(b, "failed"), row(c)]).pending == (fixed,)


def test_a_new_version_below_an_applied_one_is_refused():
    a, b, c, d = m("1"), m("2"), m("3"), m("2.5")
    with pytest.raises(MigrationOrderError) as caught:
        plan_run([a, b, c, d, m("4")], [row(a), row(c, "applied_with_warnings")])
    assert caught.value.filenames == ["V2__x.sql", "V2.5__x.sql"]
    assert caught.value.highest == "3"
    assert str(caught.value) == (
        "V2__x.sql, V2.5__x.sql: version below 3, which is already applied; no migration was run. "
        "Rename the file(s) to a version above 3"
    )


def test_a_failed_row_does_not_raise_the_bar():
    a, b = m("1"), m("5")
    plan = plan_run([a, m("3"), b], [row(a), row(b, "failed")])
    assert [x.version for x in plan.pending] == ["3", "5"]
