"""The backup layout on the backup volume and the manifest format (pure: no I/O here).

One directory per backup, on the backup volume::

    <dir>/<database>-<YYYYmmddTHHMMSSZ>/       published (only after verification)
        manifest.json                          this module's format
        dump/                                  pg_dump --format=directory
    <dir>/.tmp-<name>/                         being written, or left by a crash (swept)
    <dir>/.lock/                               held by the running backup

A backup is published by renaming its temporary directory after the manifest is written and
fsync'd and the dump verified, so a published name always has a complete manifest. The manifest
is one line of compact JSON with sorted keys; the POSIX script (:mod:`.script`) writes exactly the
same form, and each side verifies what the other wrote (the file entries are matched textually by
the script, so their form is fixed: ``"<path>":{"sha256":"<hex>","size":<bytes>}``).

The metadata block (versions, license, extensions, schema version, row and chunk counts,
continuous aggregates) comes from :data:`METADATA_SQL`, run inside the snapshot the dump uses, so
the counts are exactly the dump's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT = "ms5-backup/1"
"""Manifest format tag; a reader refuses any other."""
MANIFEST_NAME = "manifest.json"
DUMP_DIR = "dump"
TMP_PREFIX = ".tmp-"
LOCK_DIR = ".lock"
BAD_MARKER = "VERIFICATION-FAILED"
"""Written into a published backup that later failed verification: never restorable again."""

NAME_RE = re.compile(r"(?P<database>[a-z_][a-z0-9_]{0,62})-(?P<stamp>[0-9]{8}T[0-9]{6}Z)")
"""A published backup's directory name; sorting names of one database sorts them by time."""
FILE_RE = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
"""Paths inside a backup (pg_dump's own file names); anything else is refused."""
SAFE_TEXT_RE = re.compile(r"[A-Za-z0-9 ._:,=/+@()-]*")
"""Free text (label, reason) the script embeds in JSON without escaping."""

METADATA_GUC = "ms5.backup_metadata"

METADATA_SQL = f"""DO $ms5$
DECLARE
  row_counts jsonb := '{{}}';
  chunk_counts jsonb := '{{}}';
  compressed jsonb := '{{}}';
  caggs jsonb := '{{}}';
  extensions jsonb;
  license text;
  schema_version text;
  r record;
  n bigint;
BEGIN
  SELECT coalesce(jsonb_object_agg(extname, extversion), '{{}}') INTO extensions FROM pg_extension;
  FOR r IN
    SELECT ns.nspname AS s, c.relname AS t
    FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
      AND ns.nspname !~ '^(pg_toast|pg_temp|_timescaledb|timescaledb_)'
    ORDER BY 1, 2
  LOOP
    EXECUTE format('SELECT count(*) FROM %I.%I', r.s, r.t) INTO n;
    row_counts := row_counts || jsonb_build_object(r.s || '.' || r.t, n);
  END LOOP;
  IF extensions ? 'timescaledb' THEN
    EXECUTE $q$SELECT coalesce(jsonb_object_agg(hypertable_schema || '.' || hypertable_name,
                 num_chunks), '{{}}') FROM timescaledb_information.hypertables$q$ INTO chunk_counts;
    EXECUTE $q$SELECT coalesce(jsonb_object_agg(k, v), '{{}}') FROM (
                 SELECT hypertable_schema || '.' || hypertable_name AS k,
                        count(*) FILTER (WHERE is_compressed) AS v
                 FROM timescaledb_information.chunks GROUP BY 1) s$q$ INTO compressed;
    FOR r IN EXECUTE $q$SELECT view_schema AS s, view_name AS t
                        FROM timescaledb_information.continuous_aggregates ORDER BY 1, 2$q$
    LOOP
      EXECUTE format('SELECT count(*) FROM %I.%I', r.s, r.t) INTO n;
      caggs := caggs || jsonb_build_object(r.s || '.' || r.t, n);
    END LOOP;
    license := current_setting('timescaledb.license', true);
  END IF;
  IF to_regclass('ms5_meta.schema_history') IS NOT NULL THEN
    EXECUTE $q$SELECT version FROM ms5_meta.schema_history
               WHERE outcome IN ('applied', 'applied_with_warnings')
               ORDER BY string_to_array(version, '.')::int[] DESC LIMIT 1$q$ INTO schema_version;
  END IF;
  PERFORM set_config('{METADATA_GUC}', jsonb_build_object(
    'chunk_counts', chunk_counts,
    'compressed_chunk_counts', compressed,
    'continuous_aggregates', caggs,
    'extensions', extensions,
    'postgres_version', current_setting('server_version'),
    'postgres_version_num', current_setting('server_version_num')::int,
    'row_counts', row_counts,
    'schema_version', schema_version,
    'timescaledb_license', license,
    'timescaledb_version', extensions ->> 'timescaledb')::text, false);
END
$ms5$;
SELECT current_setting('{METADATA_GUC}');
"""
"""Collects the manifest's metadata block; the last statement returns it as JSON text. Runs in a
read-only transaction (it only counts)."""

COMPARED = ("row_counts", "chunk_counts", "compressed_chunk_counts", "continuous_aggregates")
"""Metadata a restore must reproduce exactly (the drill compares them)."""


class ManifestError(ValueError):
    """A manifest is missing, malformed or does not match the files."""


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class Metadata:
    """What the server said inside the dump's snapshot."""

    postgres_version: str
    postgres_version_num: int
    timescaledb_version: str | None
    timescaledb_license: str | None
    extensions: Mapping[str, str]
    schema_version: str | None
    row_counts: Mapping[str, int]
    chunk_counts: Mapping[str, int]
    compressed_chunk_counts: Mapping[str, int]
    continuous_aggregates: Mapping[str, int]

    @property
    def postgres_major(self) -> int:
        return self.postgres_version_num // 10000

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Metadata:
        def counts(key: str) -> dict[str, int]:
            value = raw.get(key) or {}
            if not isinstance(value, Mapping):
                raise ManifestError(f"metadata.{key}: expected an object of counts")
            return {str(k): int(v) for k, v in sorted(value.items())}

        try:
            return cls(
                postgres_version=str(raw["postgres_version"]),
                postgres_version_num=int(raw["postgres_version_num"]),
                timescaledb_version=_opt(raw.get("timescaledb_version")),
                timescaledb_license=_opt(raw.get("timescaledb_license")),
                extensions={
                    str(k): str(v) for k, v in sorted((raw.get("extensions") or {}).items())
                },
                schema_version=_opt(raw.get("schema_version")),
                row_counts=counts("row_counts"),
                chunk_counts=counts("chunk_counts"),
                compressed_chunk_counts=counts("compressed_chunk_counts"),
                continuous_aggregates=counts("continuous_aggregates"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"metadata: malformed ({exc})") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_counts": dict(self.chunk_counts),
            "compressed_chunk_counts": dict(self.compressed_chunk_counts),
            "continuous_aggregates": dict(self.continuous_aggregates),
            "extensions": dict(self.extensions),
            "postgres_version": self.postgres_version,
            "postgres_version_num": self.postgres_version_num,
            "row_counts": dict(self.row_counts),
            "schema_version": self.schema_version,
            "timescaledb_license": self.timescaledb_license,
            "timescaledb_version": self.timescaledb_version,
        }


def _opt(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """One backup's manifest."""

    backup: str
    """The published directory name (``<database>-<stamp>``)."""
    database: str
    files: Mapping[str, FileEntry]
    """Every file below the backup directory except the manifest, by relative path."""
    started_at: str
    started_epoch: int
    finished_at: str
    finished_epoch: int
    label: str
    reason: str
    metadata: Metadata
    pg_dump: Mapping[str, Any] = field(default_factory=dict)
    """``version`` of the pg_dump that wrote it, ``jobs`` and ``compression``."""

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "backup": self.backup,
            "database": self.database,
            "files": {
                p: {"sha256": f.sha256, "size": f.size} for p, f in sorted(self.files.items())
            },
            "finished_at": self.finished_at,
            "finished_epoch": self.finished_epoch,
            "format": FORMAT,
            "label": self.label,
            "metadata": self.metadata.to_json(),
            "pg_dump": dict(self.pg_dump),
            "reason": self.reason,
            "started_at": self.started_at,
            "started_epoch": self.started_epoch,
        }

    def dumps(self) -> str:
        """The canonical text: one line of compact JSON with sorted keys, then a newline."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")) + "\n"


def parse_manifest(text: str, *, where: str = MANIFEST_NAME) -> Manifest:
    """Parse and validate a manifest; :class:`ManifestError` names ``where`` and the fault."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    if raw.get("format") != FORMAT:
        raise ManifestError(
            f"{where}: format {raw.get('format')!r} is not {FORMAT!r}; this backup was written by "
            "another version of the tooling"
        )
    files = _parse_files(raw.get("files"), where)
    name = str(raw.get("backup") or "")
    if not NAME_RE.fullmatch(name):
        raise ManifestError(f"{where}: backup name {name!r} is not <database>-<stamp>")
    try:
        return Manifest(
            backup=name,
            database=str(raw["database"]),
            files=files,
            started_at=str(raw["started_at"]),
            started_epoch=int(raw["started_epoch"]),
            finished_at=str(raw["finished_at"]),
            finished_epoch=int(raw["finished_epoch"]),
            label=str(raw.get("label") or ""),
            reason=str(raw.get("reason") or ""),
            metadata=Metadata.from_json(raw["metadata"]),
            pg_dump=dict(raw.get("pg_dump") or {}),
        )
    except ManifestError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: malformed ({type(exc).__name__}: {exc})") from None


def _parse_files(files_raw: object, where: str) -> dict[str, FileEntry]:
    if not isinstance(files_raw, dict) or not files_raw:
        raise ManifestError(f"{where}: lists no files")
    files: dict[str, FileEntry] = {}
    for path, entry in files_raw.items():
        if not FILE_RE.fullmatch(path) or ".." in path.split("/"):
            raise ManifestError(f"{where}: refuses the file name {path!r}")
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: {path}: expected sha256 and size")
        sha = str(entry.get("sha256"))
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ManifestError(f"{where}: {path}: sha256 {sha!r} is not 64 hex digits")
        size = entry.get("size")
        if not isinstance(size, int) or size < 0:
            raise ManifestError(f"{where}: {path}: size {size!r} is not a byte count")
        files[path] = FileEntry(sha256=sha, size=size)
    return files


def parse_listing(text: str) -> dict[str, FileEntry]:
    """The script's ``files`` output (``<sha256> <size> <path>`` per line) as entries."""
    out: dict[str, FileEntry] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise ManifestError(f"file listing: unexpected line {line!r}")
        out[parts[2]] = FileEntry(sha256=parts[0], size=int(parts[1]))
    return out


def verify_files(manifest: Manifest, actual: Mapping[str, FileEntry]) -> list[str]:
    """Every difference between the manifest and the files found (empty: they match)."""
    problems: list[str] = []
    for path in sorted(set(manifest.files) - set(actual)):
        problems.append(f"{path}: listed in the manifest but missing")
    for path in sorted(set(actual) - set(manifest.files)):
        problems.append(f"{path}: present but not in the manifest")
    for path in sorted(set(actual) & set(manifest.files)):
        want, got = manifest.files[path], actual[path]
        if want.size != got.size:
            problems.append(f"{path}: size {got.size} bytes, manifest says {want.size}")
        elif want.sha256 != got.sha256:
            problems.append(f"{path}: sha256 {got.sha256}, manifest says {want.sha256}")
    return problems


def compare_metadata(expected: Metadata, actual: Metadata) -> list[str]:
    """What a restore reproduced differently (row, chunk, compressed chunk, aggregate counts)."""
    mismatches: list[str] = []
    for key in COMPARED:
        want: Mapping[str, int] = getattr(expected, key)
        got: Mapping[str, int] = getattr(actual, key)
        for name in sorted(set(want) | set(got)):
            if want.get(name) != got.get(name):
                mismatches.append(
                    f"{key}.{name}: backup {want.get(name, 'absent')}, "
                    f"restored {got.get(name, 'absent')}"
                )
    return mismatches
