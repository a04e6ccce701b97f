"""What a rule sees and what it returns: plain data, no Pulumi SDK.

A rule is a pure function. Resource rules take one :class:`Resource` and a :class:`Context`;
stack rules take every resource of the stack. They return :class:`Violation` (the resource breaks
the rule) and :class:`Unchecked` (a value the rule needs is unknown at preview: said, never passed
silently) findings. Messages name the resource and the property and say what to do; they never
contain a property's value (any value may be a secret).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Tier = Literal["production", "staging"]

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
DYNAMIC = "pulumi-python:dynamic/ms5:"
MIGRATION_SET = DYNAMIC + "MigrationSet"
MONITORING_ROLE = DYNAMIC + "MonitoringRole"
BACKUP = DYNAMIC + "Backup"
RESTORE_DRILL = DYNAMIC + "RestoreDrill"
VERIFICATION = DYNAMIC + "Verification"
BENCHMARK = DYNAMIC + "Benchmark"
DEPLOY_GATE = DYNAMIC + "DeployGate"
CONTAINER_HEALTH = DYNAMIC + "ContainerHealth"


class Unknown:
    """A value the engine does not know yet (preview: an output of a resource not created yet)."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown at preview>"


UNKNOWN = Unknown()


def is_unknown(value: object) -> bool:
    """Whether ``value`` is, or contains, an unknown."""
    if isinstance(value, Unknown):
        return True
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_unknown(v) for v in value)
    return False


@dataclass(frozen=True, kw_only=True)
class Options:
    """The resource options the analyzer protocol carries (``retainOnDelete`` is not one)."""

    protect: bool = False
    delete_before_replace: bool | None = None
    ignore_changes: tuple[str, ...] = ()
    additional_secret_outputs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Resource:
    """One resource as the analyzer receives it."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    """Inputs (``Analyze``) or outputs (``AnalyzeStack``); unknowns are :data:`UNKNOWN`."""
    options: Options = field(default_factory=Options)
    parent: str = ""
    dependencies: tuple[str, ...] = ()
    """URNs this resource depends on (``AnalyzeStack`` only): ``dependsOn`` and input edges."""

    @property
    def label(self) -> str:
        """How messages name the resource: logical name and short type."""
        return f"{self.name} ({self.type.rsplit(':', 1)[-1]})"


@dataclass(frozen=True, kw_only=True)
class Context:
    """What a rule knows besides the resource: the stack's tier and the policy's config."""

    tier: Tier
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.tier == "production"


@dataclass(frozen=True)
class Violation:
    """The resource (or the stack, when ``urn`` is empty) breaks the rule."""

    message: str
    urn: str = ""


@dataclass(frozen=True)
class Unchecked:
    """A property the rule needs is unknown at preview; ``pulumi up`` checks it before the step."""

    what: str


Finding = Violation | Unchecked
ResourceRule = Callable[[Resource, Context], list[Finding]]
StackRule = Callable[[Sequence[Resource], Context], list[Finding]]


# ------------------------------------------------------------------------------------------------
# Small readers the rules share
# ------------------------------------------------------------------------------------------------


def env_map(props: Mapping[str, Any]) -> dict[str, Any]:
    """A container's ``envs`` (``NAME=value`` strings) as a dict; unknown entries are skipped
    (see :func:`unknown_envs`)."""
    out: dict[str, Any] = {}
    envs = props.get("envs") or []
    if isinstance(envs, Unknown):
        return out
    for entry in envs:
        if isinstance(entry, str) and "=" in entry:
            name, value = entry.split("=", 1)
            out[name] = value
    return out


def unknown_envs(props: Mapping[str, Any]) -> bool:
    """Whether some of a container's env entries are unknown (their names too)."""
    return is_unknown(props.get("envs"))


def labels(props: Mapping[str, Any]) -> dict[str, Any]:
    """A container's ``labels`` list ({label, value}) as a dict."""
    out: dict[str, Any] = {}
    items = props.get("labels") or []
    if isinstance(items, Unknown):
        return out
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("label"), str):
            out[item["label"]] = item.get("value")
    return out


def strings(value: Any) -> list[Any]:
    """A list property as a list (``[]`` when absent)."""
    if isinstance(value, list | tuple):
        return list(value)
    return []


def uploads(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A container's uploaded files."""
    return [u for u in strings(props.get("uploads")) if isinstance(u, Mapping)]


PGDATA_DEFAULT = "/var/lib/postgresql/data"


def is_database(resource: Resource) -> bool:
    """A PostgreSQL/TimescaleDB container: the official image's ``POSTGRES_*`` variables or a
    ``postgres`` command."""
    if resource.type != CONTAINER:
        return False
    envs = env_map(resource.props)
    command = strings(resource.props.get("command"))
    return any(k.startswith("POSTGRES_") for k in envs) or (
        bool(command) and command[0] == "postgres"
    )


def pgdata_path(resource: Resource) -> str:
    """Where the database keeps its data: ``PGDATA`` or the image's default."""
    value = env_map(resource.props).get("PGDATA")
    return value if isinstance(value, str) and value else PGDATA_DEFAULT


def is_grafana(resource: Resource) -> bool:
    """Grafana's container: it is configured with ``GF_*`` variables."""
    return resource.type == CONTAINER and any(k.startswith("GF_") for k in env_map(resource.props))


def is_prometheus(resource: Resource) -> bool:
    """Prometheus' container: it has a TSDB path flag."""
    return resource.type == CONTAINER and any(
        isinstance(a, str) and a.startswith("--storage.tsdb.path")
        for a in strings(resource.props.get("command"))
    )


def is_exporter(resource: Resource) -> bool:
    """postgres_exporter's container: ``DATA_SOURCE_*`` variables."""
    if resource.type != CONTAINER:
        return False
    names = env_map(resource.props)
    return any(k.startswith("DATA_SOURCE_") for k in names)


def number(value: Any) -> float | None:
    """A numeric property (numbers arrive as floats); None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def prop(props: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` present (camelCase as the contract says, snake_case as the
    existing dynamic resources send)."""
    for name in names:
        if name in props:
            return props[name]
    return None
