"""What the migrations declare, read from their SQL (pure: no database).

The verification compares the database with the schema the migration files build. Rather than a
second hand-written list, the expectations are derived from the statements the migrations run:

- ``CREATE EXTENSION [IF NOT EXISTS] <name>``: the extension is installed;
- ``create_hypertable('<schema>.<table>', by_range('<column>', INTERVAL '<interval>'))``: a
  hypertable partitioned by that column with that chunk interval;
- ``CREATE [UNIQUE] INDEX [CONCURRENTLY] [IF NOT EXISTS] <name> ON <schema>.<table>``: a valid index;
- ``ms5_admin.set_columnstore('<rel>', '<segment by>', '<order by>', INTERVAL '<after>')``:
  columnstore (compression) enabled with those settings and a policy converting chunks after
  ``<after>`` (Timescale license);
- ``ms5_admin.set_retention('<rel>', INTERVAL '<after>')``: a retention policy (Timescale license);
- ``ms5_admin.create_continuous_aggregate('<view>', ...)``: a continuous aggregate (Timescale
  license) or a plain view of that name (Apache);
- ``ms5_admin.set_refresh_policy('<view>', INTERVAL .., INTERVAL .., INTERVAL ..)``: its refresh
  policy (start offset, end offset, schedule; Timescale license).

A later migration that calls a policy helper again replaces the earlier declaration (the helpers
replace the policy in the database the same way). Each expectation remembers the file that
declared it, so a report can say where the expectation comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, get_origin, get_type_hints

from ms5_components.migrations.plan import Migration

_Q = r"'(?P<{0}>(?:[^']|'')*)'"
_INTERVAL = r"INTERVAL\s+'(?P<{0}>[^']*)'"

_EXTENSION_RE = re.compile(
    r"^\s*CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\"?",
    re.IGNORECASE,
)
_HYPERTABLE_RE = re.compile(
    r"create_hypertable\s*\(\s*"
    + _Q.format("rel")
    + r"\s*,\s*by_range\s*\(\s*"
    + _Q.format("column")
    + r"\s*,\s*"
    + _INTERVAL.format("interval"),
    re.IGNORECASE,
)
_INDEX_RE = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+ON\s+(?:ONLY\s+)?(?P<rel>[A-Za-z_][A-Za-z0-9_.]*)",
    re.IGNORECASE,
)
_COLUMNSTORE_RE = re.compile(
    r"ms5_admin\.set_columnstore\s*\(\s*"
    + _Q.format("rel")
    + r"\s*,\s*"
    + _Q.format("segment")
    + r"\s*,\s*"
    + _Q.format("order")
    + r"\s*,\s*"
    + _INTERVAL.format("after"),
    re.IGNORECASE,
)
_RETENTION_RE = re.compile(
    r"ms5_admin\.set_retention\s*\(\s*" + _Q.format("rel") + r"\s*,\s*" + _INTERVAL.format("after"),
    re.IGNORECASE,
)
_CAGG_RE = re.compile(
    r"ms5_admin\.create_continuous_aggregate\s*\(\s*" + _Q.format("view"), re.IGNORECASE
)
_REFRESH_RE = re.compile(
    r"ms5_admin\.set_refresh_policy\s*\(\s*"
    + _Q.format("rel")
    + r"\s*,\s*"
    + _INTERVAL.format("start")
    + r"\s*,\s*"
    + _INTERVAL.format("end")
    + r"\s*,\s*"
    + _INTERVAL.format("schedule"),
    re.IGNORECASE,
)


def _qualified(name: str, default_schema: str = "public") -> str:
    name = name.replace('"', "").strip()
    return name if "." in name else f"{default_schema}.{name}"


@dataclass(frozen=True, kw_only=True)
class Hypertable:
    relation: str
    """``schema.table``."""
    time_column: str
    chunk_interval: str
    """As written in the migration (``2 hours``); compared as an interval."""
    source: str
    """The migration file that declared it."""


@dataclass(frozen=True, kw_only=True)
class Index:
    name: str
    relation: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Columnstore:
    relation: str
    segment_by: tuple[str, ...]
    order_by: str
    compress_after: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Retention:
    relation: str
    drop_after: str
    source: str


@dataclass(frozen=True, kw_only=True)
class ContinuousAggregate:
    view: str
    source: str


@dataclass(frozen=True, kw_only=True)
class RefreshPolicy:
    view: str
    start_offset: str
    end_offset: str
    schedule_interval: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Expectations:
    """Everything the migrations declare. Serializable (:meth:`to_input`/:meth:`from_input`), so
    it travels as a resource input: a change of what is expected is a visible diff."""

    extensions: tuple[str, ...] = ()
    hypertables: tuple[Hypertable, ...] = ()
    indexes: tuple[Index, ...] = ()
    columnstore: tuple[Columnstore, ...] = ()
    retention: tuple[Retention, ...] = ()
    continuous_aggregates: tuple[ContinuousAggregate, ...] = ()
    refresh_policies: tuple[RefreshPolicy, ...] = ()

    def intervals(self) -> tuple[str, ...]:
        """Every interval text the expectations compare (the runner has the server normalize
        them)."""
        out: set[str] = set()
        out.update(h.chunk_interval for h in self.hypertables)
        out.update(c.compress_after for c in self.columnstore)
        out.update(r.drop_after for r in self.retention)
        for p in self.refresh_policies:
            out.update((p.start_offset, p.end_offset, p.schedule_interval))
        return tuple(sorted(out))

    def to_input(self) -> dict[str, Any]:
        """Plain data with sorted keys and lists (a byte-stable resource input)."""
        out: dict[str, Any] = {"extensions": list(self.extensions)}
        for kind, _cls in _KINDS:
            out[_camel(kind)] = [_item_to_input(item) for item in getattr(self, kind)]
        return out

    @classmethod
    def from_input(cls, raw: Mapping[str, Any]) -> Expectations:
        def items(key: str) -> list[Mapping[str, Any]]:
            value = raw.get(key) or []
            return [v for v in value if isinstance(v, Mapping)]

        kinds = {
            kind: tuple(_item_from_input(item_cls, item) for item in items(_camel(kind)))
            for kind, item_cls in _KINDS
        }
        return cls(extensions=tuple(str(e) for e in raw.get("extensions") or ()), **kinds)


_KINDS: tuple[tuple[str, type[Any]], ...] = (
    ("hypertables", Hypertable),
    ("indexes", Index),
    ("columnstore", Columnstore),
    ("retention", Retention),
    ("continuous_aggregates", ContinuousAggregate),
    ("refresh_policies", RefreshPolicy),
)
"""The expectation kinds: the :class:`Expectations` field and the class of its items. An item
travels as a dict of its fields, named in camelCase, in field order."""

_OPTIONAL_FIELDS = frozenset({"source"})
"""Item fields an input may lack (read as ""); every other field is required."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _item_to_input(item: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(item):
        value = getattr(item, f.name)
        out[_camel(f.name)] = list(value) if isinstance(value, tuple) else value
    return out


def _item_from_input(item_cls: type[Any], raw: Mapping[str, Any]) -> Any:
    hints = get_type_hints(item_cls)
    values: dict[str, Any] = {}
    for f in fields(item_cls):
        key = _camel(f.name)
        if get_origin(hints[f.name]) is tuple:
            values[f.name] = tuple(str(v) for v in raw.get(key) or ())
        elif f.name in _OPTIONAL_FIELDS:
            values[f.name] = str(raw.get(key) or "")
        else:
            values[f.name] = str(raw[key])
    return item_cls(**values)


def _unquote(value: str) -> str:
    return value.replace("''", "'")


def _segment_list(raw: str) -> tuple[str, ...]:
    return tuple(p.strip().replace('"', "") for p in raw.split(",") if p.strip())


def derive(migrations: Sequence[Migration] | Iterable[Migration]) -> Expectations:
    """The expectations declared by ``migrations`` (in version order; later calls win)."""
    extensions: dict[str, None] = {}
    hypertables: dict[str, Hypertable] = {}
    indexes: dict[str, Index] = {}
    columnstore: dict[str, Columnstore] = {}
    retention: dict[str, Retention] = {}
    caggs: dict[str, ContinuousAggregate] = {}
    refresh: dict[str, RefreshPolicy] = {}
    for migration in sorted(migrations, key=lambda m: m.key):
        source = migration.filename
        for statement in migration.statements:
            text = statement.sql
            if match := _EXTENSION_RE.match(text):
                extensions[match["name"].lower()] = None
            for match in _HYPERTABLE_RE.finditer(text):
                rel = _qualified(_unquote(match["rel"]))
                hypertables[rel] = Hypertable(
                    relation=rel,
                    time_column=_unquote(match["column"]),
                    chunk_interval=match["interval"],
                    source=source,
                )
            if match := _INDEX_RE.match(text):
                indexes[match["name"]] = Index(
                    name=match["name"], relation=_qualified(match["rel"]), source=source
                )
            for match in _COLUMNSTORE_RE.finditer(text):
                rel = _qualified(_unquote(match["rel"]))
                columnstore[rel] = Columnstore(
                    relation=rel,
                    segment_by=_segment_list(_unquote(match["segment"])),
                    order_by=_unquote(match["order"]).strip(),
                    compress_after=match["after"],
                    source=source,
                )
            for match in _RETENTION_RE.finditer(text):
                rel = _qualified(_unquote(match["rel"]))
                retention[rel] = Retention(relation=rel, drop_after=match["after"], source=source)
            for match in _CAGG_RE.finditer(text):
                view = _qualified(_unquote(match["view"]))
                caggs[view] = ContinuousAggregate(view=view, source=source)
            for match in _REFRESH_RE.finditer(text):
                view = _qualified(_unquote(match["rel"]))
                refresh[view] = RefreshPolicy(
                    view=view,
                    start_offset=match["start"],
                    end_offset=match["end"],
                    schedule_interval=match["schedule"],
                    source=source,
                )
    return Expectations(
        extensions=tuple(sorted(extensions)),
        hypertables=tuple(hypertables[k] for k in sorted(hypertables)),
        indexes=tuple(indexes[k] for k in sorted(indexes)),
        columnstore=tuple(columnstore[k] for k in sorted(columnstore)),
        retention=tuple(retention[k] for k in sorted(retention)),
        continuous_aggregates=tuple(caggs[k] for k in sorted(caggs)),
        refresh_policies=tuple(refresh[k] for k in sorted(refresh)),
    )
