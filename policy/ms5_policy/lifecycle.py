"""Resource rules for the lifecycle (dynamic) resources, matched by their type tokens.

Input names follow the lifecycle contract (camelCase, as the dynamic provider receives them);
the migration set's inputs are the ones :mod:`ms5_components.migrations.provider` sends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ms5_policy.model import (
    BACKUP,
    BENCHMARK,
    MIGRATION_SET,
    Context,
    Finding,
    Resource,
    Unchecked,
    Unknown,
    Violation,
    number,
)

DEFAULT_MIN_KEEP = {"production": 7, "staging": 1}
"""Backups kept at least, by tier (policy config ``minKeepCount`` overrides)."""


def backups_verified_and_retained(resource: Resource, ctx: Context) -> list[Finding]:
    """Backups are verified, keep at least N copies and, in production, fail the deploy when
    they fail."""
    if resource.type != BACKUP:
        return []
    props = resource.props
    out: list[Finding] = []
    minimum = int(ctx.config.get("minKeepCount", DEFAULT_MIN_KEEP[ctx.tier]))
    verify = props.get("verify")
    if isinstance(verify, Unknown):
        out.append(Unchecked(f"{resource.label}: verify"))
    elif verify is not True:
        out.append(
            Violation(
                f"{resource.label}: verify is not true; a backup that was never restored "
                "is not a backup. Set verify=true."
            )
        )
    keep = props.get("keepCount")
    if isinstance(keep, Unknown):
        out.append(Unchecked(f"{resource.label}: keepCount"))
    elif (number(keep) or 0) < minimum:
        out.append(
            Violation(
                f"{resource.label}: keepCount is below {minimum}; keep at least {minimum} "
                "backups (policy config minKeepCount)."
            )
        )
    max_age = props.get("maxAgeDays")
    if not isinstance(max_age, Unknown) and (number(max_age) is None or (number(max_age) or 0) < 0):
        out.append(
            Violation(f"{resource.label}: maxAgeDays is not a whole number >= 0 (0 = no limit).")
        )
    if ctx.production:
        mandatory = props.get("mandatory")
        if isinstance(mandatory, Unknown):
            out.append(Unchecked(f"{resource.label}: mandatory"))
        elif mandatory is not True:
            out.append(
                Violation(
                    f"{resource.label}: mandatory is not true; in production a failed backup "
                    "must stop the deploy before migrations run."
                )
            )
    return out


THRESHOLDS = ("minIngestRowsPerSecond", "maxQueryP95Ms", "minCompressionRatio")


def benchmark_thresholds(resource: Resource, ctx: Context) -> list[Finding]:
    """Benchmarks carry positive thresholds; in production all three are set and gate the
    deploy."""
    if resource.type != BENCHMARK:
        return []
    thresholds = resource.props.get("thresholds")
    if isinstance(thresholds, Unknown):
        return [Unchecked(f"{resource.label}: thresholds")]
    values: Mapping[str, Any] = thresholds if isinstance(thresholds, Mapping) else {}
    out: list[Finding] = []
    for key in THRESHOLDS:
        value = values.get(key)
        if isinstance(value, Unknown):
            out.append(Unchecked(f"{resource.label}: thresholds.{key}"))
        elif value is None:
            if ctx.production:
                out.append(
                    Violation(
                        f"{resource.label}: thresholds.{key} is not set; set it for production."
                    )
                )
        elif not (number(value) or 0) > 0:
            out.append(Violation(f"{resource.label}: thresholds.{key} is not a positive number."))
    if ctx.production:
        gate = resource.props.get("gate")
        if isinstance(gate, Unknown):
            out.append(Unchecked(f"{resource.label}: gate"))
        elif gate is not True:
            out.append(
                Violation(
                    f"{resource.label}: gate is not true; in production a benchmark below its "
                    "thresholds must fail the deploy."
                )
            )
    return out


# ------------------------------------------------------------------------------------------------
# Hypertables and their policies, read from the migration SQL
# ------------------------------------------------------------------------------------------------

_LINE_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_NAME = r"'([A-Za-z0-9_.\"]+)'"
_CREATE_HYPERTABLE = re.compile(r"\bcreate_hypertable\s*\(\s*(?:relation\s*=>\s*)?" + _NAME, re.I)
_CREATE_TABLE_HYPERTABLE = re.compile(
    r"\bcreate\s+table\s+(?:if\s+not\s+exists\s+)?([A-Za-z0-9_.\"]+)[^;]*?\bwith\s*\([^)]*"
    r"\b(?:tsdb|timescaledb)\.hypertable\b",
    re.I | re.S,
)
_COMPRESSION = re.compile(
    r"\b(?:ms5_admin\.set_columnstore|add_compression_policy|add_columnstore_policy)\s*\(\s*"
    r"(?:hypertable\s*=>\s*|relation\s*=>\s*)?" + _NAME,
    re.I,
)
_RETENTION = re.compile(
    r"\b(?:ms5_admin\.set_retention|add_retention_policy)\s*\(\s*(?:relation\s*=>\s*)?" + _NAME,
    re.I,
)


def _relation(name: str) -> str:
    clean = name.replace('"', "").lower()
    return clean if "." in clean else f"public.{clean}"


def hypertable_policies(sql_by_file: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every hypertable the migrations create -> the file creating it and whether some
    migration adds a compression (columnstore) and a retention policy for it."""
    tables: dict[str, dict[str, Any]] = {}
    compressed: set[str] = set()
    retained: set[str] = set()
    for filename in sorted(sql_by_file):
        sql = _BLOCK_COMMENT.sub(" ", _LINE_COMMENT.sub(" ", sql_by_file[filename]))
        for pattern in (_CREATE_HYPERTABLE, _CREATE_TABLE_HYPERTABLE):
            for match in pattern.finditer(sql):
                tables.setdefault(_relation(match.group(1)), {"file": filename})
        compressed.update(_relation(m.group(1)) for m in _COMPRESSION.finditer(sql))
        retained.update(_relation(m.group(1)) for m in _RETENTION.finditer(sql))
    for table, info in tables.items():
        info["compression"] = table in compressed
        info["retention"] = table in retained
    return tables


def hypertables_have_policies(resource: Resource, ctx: Context) -> list[Finding]:
    """In production every hypertable the migrations create has a compression and a retention
    policy (checked on the MigrationSet's inputs: only they carry the SQL)."""
    if resource.type != MIGRATION_SET or not ctx.production:
        return []
    migrations = resource.props.get("migrations")
    if isinstance(migrations, Unknown):
        return [Unchecked(f"{resource.label}: migrations")]
    if not isinstance(migrations, Mapping):
        return []
    sql: dict[str, str] = {}
    out: list[Finding] = []
    for filename, entry in migrations.items():
        text = entry.get("sql") if isinstance(entry, Mapping) else None
        if isinstance(text, Unknown):
            out.append(Unchecked(f"{resource.label}: migrations.{filename}.sql"))
        elif isinstance(text, str):
            sql[str(filename)] = text
    for table, info in sorted(hypertable_policies(sql).items()):
        missing = [k for k in ("compression", "retention") if not info[k]]
        if missing:
            out.append(
                Violation(
                    f"{resource.label}: hypertable {table} (created in {info['file']}) has no "
                    f"{' and no '.join(missing)} policy; add a migration calling "
                    + " and ".join(
                        "ms5_admin.set_columnstore"
                        if m == "compression"
                        else "ms5_admin.set_retention"
                        for m in missing
                    )
                    + f"('{table}', ...)."
                )
            )
    return out
