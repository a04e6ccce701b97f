"""The migration plan: a pure object, testable with no database.

A migration is a file ``V<version>__<description>.sql`` in a migrations directory:

- ``<version>`` is one or more whole numbers separated by ``.`` or ``_`` (``V7``, ``V0007``,
  ``V2_1``); leading zeros and trailing ``.0`` parts are ignored, so ``V7`` and ``V007`` are the
  same version (a duplicate);
- ``<description>`` is letters, digits, ``_`` and ``-`` (underscores read as spaces);
- the header (the comment lines before the first statement) may carry directives, one per line:
  ``-- ms5:transaction=off`` runs the file outside a transaction, statement by statement (for
  ``CREATE INDEX CONCURRENTLY``, continuous aggregates ``WITH DATA``,
  ``CALL refresh_continuous_aggregate``); the default is ``on``.

The checksum is the sha256 of the file's text with a UTF-8 BOM removed and CRLF/CR line endings
turned into LF, so a Windows checkout (``core.autocrlf``) is not mistaken for drift.

Everything here raises :class:`~ms5_components.errors.MigrationFileError` (naming the file and, when
known, the line) or returns values; nothing touches a database. :func:`plan_run` compares the files
with the history rows read by the runner and decides what runs: drift (an applied file edited,
renamed or gone) and out-of-order versions stop the run before any migration SQL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ms5_components.errors import (
    Drift,
    MigrationDriftError,
    MigrationFileError,
    MigrationFileErrors,
    MigrationOrderError,
)

FILENAME_RE = re.compile(
    r"V(?P<version>\d+(?:[._]\d+)*)__(?P<description>[A-Za-z0-9][A-Za-z0-9_-]*)\.sql"
)
"""A migration file name: ``V<version>__<description>.sql``."""

_LOOKS_LIKE_MIGRATION = re.compile(r"[Vv]\d")
_DIRECTIVE_RE = re.compile(r"--\s*ms5:(?P<body>\S.*?)\s*$")
_TRANSACTION_DIRECTIVE = re.compile(r"transaction\s*=\s*(?P<value>on|off)", re.IGNORECASE)

Outcome = Literal["applied", "applied_with_warnings", "failed", "retired"]
"""Outcome of a history row: applied (possibly with recorded WARNINGs), failed (a
non-transactional migration stopped part-way; retried from its first statement on the next run),
or retired (applied once, its file deliberately removed through ``ms5:migrationRepair``)."""

APPLIED_OUTCOMES: frozenset[str] = frozenset({"applied", "applied_with_warnings"})


# --------------------------------------------------------------------------------------------------
# Versions, checksums, statements
# --------------------------------------------------------------------------------------------------


def parse_version(raw: str) -> tuple[int, ...]:
    """``"0007"`` -> ``(7,)``; ``"2_1"`` / ``"2.1.0"`` -> ``(2, 1)``. ValueError if malformed."""
    if not re.fullmatch(r"\d+(?:[._]\d+)*", raw):
        raise ValueError(f"malformed version {raw!r}: expected numbers separated by . or _")
    parts = [int(p) for p in re.split(r"[._]", raw)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def format_version(key: tuple[int, ...]) -> str:
    """The canonical text of a version: ``(2, 1)`` -> ``"2.1"``."""
    return ".".join(str(p) for p in key)


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a canonical version string."""
    return parse_version(version)


def normalize_text(data: bytes, filename: str) -> str:
    """Decode a migration file: UTF-8, BOM removed, line endings LF."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationFileError(
            filename, f"is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from exc
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def checksum(text: str) -> str:
    """sha256 (hex) of the normalized text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a migration file."""

    sql: str
    """The statement text without its terminating semicolon, starting at its first token."""
    line: int
    """1-based line of the file where the statement starts."""
    words: str
    """Upper-cased words outside strings and comments, space separated (for classification)."""

    def line_at(self, position: int | None) -> int:
        """The file line of a 1-based character ``position`` in :attr:`sql` (PostgreSQL's
        error position), or the statement's first line when unknown."""
        if not position or position < 1:
            return self.line
        return self.line + self.sql.count("\n", 0, position - 1)


_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")


def split_statements(text: str, filename: str = "<sql>") -> tuple[Statement, ...]:
    """Split SQL text into statements at top-level semicolons.

    Understands ``--`` and nested ``/* */`` comments, '' strings (with E'' backslash escapes),
    "" identifiers and $tag$ dollar quotes. psql meta-commands (a line starting with a backslash)
    are refused, naming the line. SQL-standard function bodies (``BEGIN ATOMIC ... END``) must be
    written with dollar quotes instead.
    """
    statements: list[Statement] = []
    n = len(text)
    i = 0
    line = 1
    start: int | None = None  # index of the first token of the current statement
    start_line = 1
    words: list[str] = []
    at_line_start = True

    def flush(end: int) -> None:
        nonlocal start
        if start is not None:
            statements.append(
                Statement(sql=text[start:end].rstrip(), line=start_line, words=" ".join(words))
            )
        start = None
        words.clear()

    def begin(pos: int) -> None:
        nonlocal start, start_line
        if start is None:
            start = pos
            start_line = line

    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            at_line_start = True
            i += 1
            continue
        if at_line_start and ch in " \t":
            i += 1
            continue
        if at_line_start and ch == "\\":
            raise MigrationFileError(
                filename,
                "contains a psql meta-command; only SQL is supported (remove the line)",
                line=line,
            )
        at_line_start = False
        if ch.isspace():
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if ch == "-" and nxt == "-":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch == "/" and nxt == "*":
            comment_line = line
            depth = 0
            j = i
            while j < n:
                if text.startswith("/*", j):
                    depth += 1
                    j += 2
                elif text.startswith("*/", j):
                    depth -= 1
                    j += 2
                    if depth == 0:
                        break
                else:
                    if text[j] == "\n":
                        line += 1
                    j += 1
            if depth:
                raise MigrationFileError(
                    filename, "has an unterminated /* comment", line=comment_line
                )
            i = j
            continue
        if ch == ";":
            flush(i)
            i += 1
            continue
        begin(i)
        if ch == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or text[i - 2] not in _IDENT_CHARS)
            open_line = line
            j = i + 1
            while True:
                if j >= n:
                    raise MigrationFileError(
                        filename, "has an unterminated string literal", line=open_line
                    )
                c = text[j]
                if c == "\n":
                    line += 1
                if escapes and c == "\\":
                    if text[j + 1 : j + 2] == "\n":
                        line += 1
                    j += 2
                    continue
                if c == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if ch == '"':
            j = text.find('"', i + 1)
            while j >= 0 and j + 1 < n and text[j + 1] == '"':
                j = text.find('"', j + 2)
            if j < 0:
                raise MigrationFileError(
                    filename, "has an unterminated quoted identifier", line=line
                )
            line += text.count("\n", i, j)
            i = j + 1
            continue
        if ch == "$" and (i == 0 or text[i - 1] not in _IDENT_CHARS):
            match = _DOLLAR_TAG.match(text, i)
            if match:
                tag = match.group(0)
                j = text.find(tag, match.end())
                if j < 0:
                    raise MigrationFileError(
                        filename, f"has an unterminated {tag} dollar-quoted string", line=line
                    )
                line += text.count("\n", i, j)
                i = j + len(tag)
                continue
        if ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and text[j] in _IDENT_CHARS:
                j += 1
            words.append(text[i:j].upper())
            i = j
            continue
        if ch == "(":
            words.append("(")
        i += 1
    flush(n)
    return tuple(statements)


# --------------------------------------------------------------------------------------------------
# Statement classification (to catch mistakes before any SQL runs)
# --------------------------------------------------------------------------------------------------

_TRANSACTION_CONTROL = re.compile(
    r"(BEGIN|COMMIT|ROLLBACK|ABORT|END|SAVEPOINT|RELEASE|START TRANSACTION|PREPARE TRANSACTION)\b"
)
_NEEDS_AUTOCOMMIT: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"CREATE (UNIQUE )?INDEX CONCURRENTLY\b"), "CREATE INDEX CONCURRENTLY"),
    (re.compile(r"DROP INDEX CONCURRENTLY\b"), "DROP INDEX CONCURRENTLY"),
    (re.compile(r"REINDEX\b.*\bCONCURRENTLY\b"), "REINDEX CONCURRENTLY"),
    (re.compile(r"VACUUM\b"), "VACUUM"),
    (re.compile(r"(CREATE|DROP) DATABASE\b"), "CREATE/DROP DATABASE"),
    (re.compile(r"(CREATE|DROP) TABLESPACE\b"), "CREATE/DROP TABLESPACE"),
    (re.compile(r"ALTER SYSTEM\b"), "ALTER SYSTEM"),
    (
        re.compile(r"CALL (\w+ )?REFRESH_CONTINUOUS_AGGREGATE\b"),
        "CALL refresh_continuous_aggregate",
    ),
    (re.compile(r"CALL (\w+ )?RUN_JOB\b"), "CALL run_job"),
    (
        re.compile(r"CREATE (UNIQUE )?INDEX\b.*\bTIMESCALEDB TRANSACTION_PER_CHUNK\b"),
        "CREATE INDEX ... WITH (timescaledb.transaction_per_chunk)",
    ),
)
_CAGG = re.compile(r"CREATE MATERIALIZED VIEW\b.*\bTIMESCALEDB CONTINUOUS\b")


def transaction_control(statement: Statement) -> str | None:
    """The transaction-control keyword a statement starts with, if any."""
    match = _TRANSACTION_CONTROL.match(statement.words)
    if match is None:
        return None
    # BEGIN ATOMIC / END inside a function body would have been split already; a statement that
    # *starts* with these words is transaction control.
    return match.group(1)


def needs_autocommit(statement: Statement) -> str | None:
    """What makes a statement impossible inside a transaction block, if anything."""
    for pattern, label in _NEEDS_AUTOCOMMIT:
        if pattern.match(statement.words):
            return label
    if _CAGG.match(statement.words) and not statement.words.endswith("WITH NO DATA"):
        return "a continuous aggregate created WITH DATA (the default)"
    return None


# --------------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One versioned migration file."""

    version: str
    """Canonical version (``"7"``, ``"2.1"``)."""
    description: str
    """Description from the file name, underscores as spaces."""
    filename: str
    """Base name of the file (``V0007__energy.sql``)."""
    checksum: str
    """sha256 (hex) of the normalized text."""
    transactional: bool
    """False when the header says ``-- ms5:transaction=off``."""
    sql: str
    """The normalized text."""
    statements: tuple[Statement, ...] = field(repr=False, compare=False)
    """The statements, in order."""

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    def to_input(self) -> dict[str, object]:
        """The resource input of this migration (see :func:`migrations_to_inputs`)."""
        return {
            "checksum": self.checksum,
            "description": self.description,
            "sql": self.sql,
            "transactional": self.transactional,
            "version": self.version,
        }


def parse_filename(filename: str) -> tuple[str, str]:
    """``V0007__machine_energy.sql`` -> ``("7", "machine energy")``; MigrationFileError if not."""
    match = FILENAME_RE.fullmatch(filename)
    if match is None:
        raise MigrationFileError(
            filename,
            "is not a valid migration name; expected V<version>__<description>.sql, e.g. "
            "V0007__machine_energy.sql (version: numbers separated by . or _; description: "
            "letters, digits, _ and -)",
        )
    version = format_version(parse_version(match.group("version")))
    return version, match.group("description").replace("_", " ")


def parse_migration(filename: str, text: str) -> Migration:
    """Build a :class:`Migration` from its file name and normalized text, validating both."""
    version, description = parse_filename(filename)
    statements = split_statements(text, filename)
    transactional = True
    for line_no, raw_line in enumerate(text.split("\n"), start=1):
        match = _DIRECTIVE_RE.match(raw_line.strip())
        if match is None:
            continue
        body = match.group("body")
        tx = _TRANSACTION_DIRECTIVE.fullmatch(body)
        if tx is None:
            raise MigrationFileError(
                filename,
                f"has an unknown directive '-- ms5:{body}'; the only directive is "
                "'-- ms5:transaction=off'",
                line=line_no,
            )
        if statements and line_no > statements[0].line:
            raise MigrationFileError(
                filename,
                "has a directive after the first statement; move it to the header",
                line=line_no,
            )
        transactional = tx.group("value").lower() == "on"
    if not statements:
        raise MigrationFileError(filename, "contains no SQL statement")
    for statement in statements:
        if "BEGIN ATOMIC" in statement.words:
            raise MigrationFileError(
                filename,
                "uses a SQL-standard function body (BEGIN ATOMIC ... END), which the statement "
                "splitter cannot see the end of; write the body with dollar quotes ($$ ... $$)",
                line=statement.line,
            )
        control = transaction_control(statement)
        if control is not None:
            raise MigrationFileError(
                filename,
                f"contains transaction control ({control}); the runner runs each migration in "
                "its own transaction (or, with '-- ms5:transaction=off', each statement on its "
                "own): remove it",
                line=statement.line,
            )
        if transactional:
            reason = needs_autocommit(statement)
            if reason is not None:
                raise MigrationFileError(
                    filename,
                    f"runs {reason}, which cannot run inside a transaction: put it in a migration "
                    "whose header says '-- ms5:transaction=off'",
                    line=statement.line,
                )
    return Migration(
        version=version,
        description=description,
        filename=filename,
        checksum=checksum(text),
        transactional=transactional,
        sql=text,
        statements=statements,
    )


def _check_unique(migrations: Iterable[Migration]) -> tuple[Migration, ...]:
    by_version: dict[str, Migration] = {}
    errors: list[MigrationFileError] = []
    for migration in migrations:
        other = by_version.get(migration.version)
        if other is not None:
            errors.append(
                MigrationFileError(
                    migration.filename,
                    f"has version {migration.version}, already used by {other.filename}; "
                    "give one of them the next free version",
                )
            )
            continue
        by_version[migration.version] = migration
    if errors:
        raise MigrationFileErrors(errors)
    return tuple(sorted(by_version.values(), key=lambda m: m.key))


def load_directory(directory: Path) -> tuple[Migration, ...]:
    """Read every migration of ``directory`` (not recursive), sorted by version.

    Files that neither end in ``.sql`` nor start like a migration (``V<digit>``) are ignored
    (README, .gitkeep); a ``.sql`` file with a bad name, an unreadable or empty file, a duplicate
    version or an empty directory is an error naming the file. All errors are reported together.
    """
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise MigrationFileError(
            str(directory),
            f"cannot be read as a migrations directory ({exc.strerror}); check ms5:migrationsDir",
        ) from exc
    errors: list[MigrationFileError] = []
    migrations: list[Migration] = []
    for path in entries:
        name = path.name
        if name.startswith("."):
            continue
        candidate = name.lower().endswith(".sql") or bool(_LOOKS_LIKE_MIGRATION.match(name))
        if not candidate:
            continue
        if not path.is_file():
            errors.append(MigrationFileError(name, "is not a regular file"))
            continue
        try:
            parse_filename(name)
            data = path.read_bytes()
            migrations.append(parse_migration(name, normalize_text(data, name)))
        except MigrationFileError as exc:
            errors.append(exc)
        except OSError as exc:
            errors.append(
                MigrationFileError(name, f"cannot be read ({exc.strerror}); fix its permissions")
            )
    if not migrations and not errors:
        errors.append(
            MigrationFileError(
                str(directory),
                "contains no migration (V<version>__<description>.sql); the database would be "
                "left without a schema",
            )
        )
    try:
        result = _check_unique(migrations)
    except MigrationFileErrors as exc:
        errors.extend(exc.errors)
        result = ()
    if errors:
        raise MigrationFileErrors(errors)
    return result


def migrations_to_inputs(migrations: Sequence[Migration]) -> dict[str, dict[str, object]]:
    """The ``migrations`` input of a MigrationSet: file name -> version, description, checksum,
    transactional, sql. Keyed by file name so a preview lists the files that change."""
    return {m.filename: m.to_input() for m in sorted(migrations, key=lambda m: m.filename)}


def migrations_from_inputs(raw: Mapping[str, object]) -> tuple[Migration, ...]:
    """Rebuild and re-validate migrations from a resource input (the provider's side).

    The checksum in the input must match its SQL, and the version and description must match the
    file name: a hand-built or corrupted input is refused, naming the file.
    """
    errors: list[MigrationFileError] = []
    migrations: list[Migration] = []
    if not raw:
        raise MigrationFileErrors(
            [MigrationFileError("migrations", "is empty; expected at least one migration file")]
        )
    for filename in sorted(raw):
        try:
            migrations.append(_migration_from_input(filename, raw[filename]))
        except MigrationFileError as exc:
            errors.append(exc)
    try:
        result = _check_unique(migrations)
    except MigrationFileErrors as exc:
        errors.extend(exc.errors)
        result = ()
    if errors:
        raise MigrationFileErrors(errors)
    return result


def _migration_from_input(filename: str, entry: object) -> Migration:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("sql"), str):
        raise MigrationFileError(filename, "has no SQL text in the resource input")
    migration = parse_migration(filename, str(entry["sql"]))
    for key, expected in (
        ("checksum", migration.checksum),
        ("version", migration.version),
        ("description", migration.description),
        ("transactional", migration.transactional),
    ):
        if key in entry and entry[key] != expected:
            raise MigrationFileError(
                filename, f"input {key} {entry[key]!r} does not match the file ({expected!r})"
            )
    return migration


# --------------------------------------------------------------------------------------------------
# Planning a run against the history
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """One row of the history table, as far as planning needs it."""

    version: str
    description: str
    checksum: str
    outcome: str

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)


@dataclass(frozen=True)
class RepairEntry:
    """One entry of ``ms5:migrationRepair``: ``"<version>"`` or ``"<version>:<sha256>"``.

    The first accepts whatever the file now holds (or its removal); the second accepts exactly
    that content, so it cannot silently accept a later edit.
    """

    version: str
    checksum: str | None = None

    @classmethod
    def parse(cls, raw: str) -> RepairEntry:
        version, sep, digest = raw.strip().partition(":")
        try:
            canonical = format_version(parse_version(version.lstrip("Vv")))
        except ValueError:
            raise ValueError(
                f"{raw!r}: expected <version> or <version>:<sha256>, e.g. 3 or "
                "3:<64 hex> (the drift message prints the exact entry)"
            ) from None
        if sep and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"{raw!r}: the checksum after ':' must be 64 lower-case hex digits")
        return cls(version=canonical, checksum=digest if sep else None)

    def __str__(self) -> str:
        return f"{self.version}:{self.checksum}" if self.checksum else self.version


@dataclass(frozen=True)
class Repair:
    """A drift accepted through ``ms5:migrationRepair``: the history row is re-baselined."""

    version: str
    old_checksum: str
    migration: Migration | None
    """The file now on disk, or None when the file was removed (the row becomes ``retired``)."""


@dataclass(frozen=True)
class RunPlan:
    """What one run will do, decided before any migration SQL runs."""

    pending: tuple[Migration, ...]
    """Migrations to apply, in version order (failed non-transactional ones first in order)."""
    repairs: tuple[Repair, ...]
    """History rows to re-baseline (accepted drift)."""
    spent_repairs: tuple[str, ...]
    """Repair entries that matched no drift (already applied, or a typo): worth removing."""

    @property
    def is_noop(self) -> bool:
        return not self.pending and not self.repairs


def plan_run(
    migrations: Sequence[Migration],
    history: Sequence[HistoryRow],
    repairs: Sequence[RepairEntry] = (),
) -> RunPlan:
    """Decide what runs. Raises MigrationDriftError (every drift at once, none accepted by a
    repair entry) or MigrationOrderError (a pending version below an applied one)."""
    files = {m.version: m for m in migrations}
    rows = {r.version: r for r in history}
    repair_by_version = {r.version: r for r in repairs}
    used_repairs: set[str] = set()
    drifts: list[Drift] = []
    accepted: list[Repair] = []

    for row in sorted(history, key=lambda r: r.key):
        migration = files.get(row.version)
        if row.outcome == "failed":
            continue  # retried below from its first statement
        if row.outcome == "retired":
            if migration is not None:
                drifts.append(
                    Drift(
                        version=row.version,
                        filename=migration.filename,
                        recorded=row.checksum,
                        current=migration.checksum,
                        kind="reappeared",
                    )
                )
            continue
        if migration is None:
            drift = Drift(
                version=row.version,
                filename=_history_filename(row),
                recorded=row.checksum,
                current=None,
                kind="removed",
            )
        elif migration.checksum != row.checksum:
            drift = Drift(
                version=row.version,
                filename=migration.filename,
                recorded=row.checksum,
                current=migration.checksum,
                kind="changed",
            )
        elif migration.description != row.description:
            drift = Drift(
                version=row.version,
                filename=migration.filename,
                recorded=row.checksum,
                current=migration.checksum,
                kind="renamed",
                recorded_name=_history_filename(row),
            )
        else:
            continue
        entry = repair_by_version.get(row.version)
        if entry is not None and (entry.checksum is None or entry.checksum == drift.current):
            used_repairs.add(row.version)
            accepted.append(
                Repair(version=row.version, old_checksum=row.checksum, migration=migration)
            )
        else:
            drifts.append(drift)
    if drifts:
        raise MigrationDriftError(drifts)

    done = {v for v, r in rows.items() if r.outcome != "failed"}
    pending = tuple(m for m in sorted(migrations, key=lambda m: m.key) if m.version not in done)
    applied_keys = [r.key for r in history if r.outcome in APPLIED_OUTCOMES]
    if pending and applied_keys:
        highest = max(applied_keys)
        late = [m for m in pending if m.key < highest and rows.get(m.version) is None]
        if late:
            raise MigrationOrderError([m.filename for m in late], format_version(highest))
    spent = tuple(sorted((str(r) for v, r in repair_by_version.items() if v not in used_repairs)))
    return RunPlan(pending=pending, repairs=tuple(accepted), spent_repairs=spent)


def _history_filename(row: HistoryRow) -> str:
    return f"V{row.version}__{row.description.replace(' ', '_')}.sql"
