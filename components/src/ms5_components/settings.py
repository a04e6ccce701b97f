"""Stack settings: the one place that turns Pulumi config into frozen, validated objects.

Every key of the ``ms5`` namespace is declared once in :data:`SPECS` (type, default, description,
validation). The same table generates the typed ``config:`` block of ``Pulumi.yaml`` and the settings
reference in the README (``tools/gen_docs.py``; tests fail when either is stale).

:func:`load_settings` is pure (a mapping of raw strings in, :class:`Settings` out) so every rule is
testable without Pulumi; :func:`from_pulumi_config` feeds it from the running program's config. All
errors are collected and raised together as :class:`~ms5_components.errors.SettingsErrors`, each
naming the key, the value (never for a secret) and what is expected.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ms5_components.errors import SettingsError, SettingsErrors

NAMESPACE = "ms5"
"""The Pulumi project name, hence the config namespace of every key (``ms5:dbImage``)."""

ConfigType = Literal["string", "integer", "boolean", "array"]
Environment = Literal["development", "staging", "production"]


class Secret:
    """A secret string that never shows itself in ``repr``/``str`` (logs, tracebacks, errors)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plaintext: only to hand to ``pulumi.Output.secret``."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --------------------------------------------------------------------------------------------------
# Value parsers: raw config string -> typed value, or ValueError with what is expected.
# --------------------------------------------------------------------------------------------------

Parser = Callable[[str], object]


def _integer(lo: int, hi: int) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}")
        return value

    return parse


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError("expected true or false")


def _enum(*choices: str) -> Parser:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return raw

    return parse


def _pattern(regex: str, expected: str) -> Parser:
    compiled = re.compile(regex)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(f"expected {expected}")
        return raw

    return parse


_IDENTIFIER = _pattern(r"[a-z_][a-z0-9_]{0,62}", "a lower-case SQL identifier ([a-z_][a-z0-9_]*)")


def _ip_address(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError("expected an IPv4 or IPv6 address such as 127.0.0.1") from None
    return raw


def _docker_host(raw: str) -> str:
    if not re.fullmatch(r"(unix|tcp|ssh|npipe)://\S+", raw):
        raise ValueError(
            "expected a Docker endpoint such as unix:///var/run/docker.sock or ssh://user@host"
        )
    return raw


def _string_list(item: Parser) -> Parser:
    def parse(raw: str) -> tuple[object, ...]:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("expected a list of strings (YAML list in the stack file)") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of strings (YAML list in the stack file)")
        out = []
        for index, entry in enumerate(value):
            try:
                out.append(item(entry))
            except ValueError as exc:
                raise ValueError(f"item {index} ({entry!r}): {exc}") from None
        return tuple(out)

    return parse


def _password(raw: str) -> Secret:
    # The value is never echoed: only its shape is described.
    if len(raw) < 16:
        raise ValueError("expected at least 16 characters (the value is not shown)")
    if any(ch.isspace() for ch in raw):
        raise ValueError("expected no white space (the value is not shown)")
    return Secret(raw)


# Server settings the container's contract owns; overriding them would break the health check,
# the published port or TimescaleDB itself.
_RESERVED_SERVER_SETTINGS = frozenset(
    {"port", "listen_addresses", "data_directory", "hba_file", "config_file", "ident_file"}
)


def _server_setting(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    name = name.strip().lower()
    value = value.strip()
    if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?", name) or not value:
        raise ValueError("expected name=value, e.g. work_mem=64MB")
    if name in _RESERVED_SERVER_SETTINGS:
        raise ValueError(f"{name} is managed by the component and cannot be overridden")
    if name == "shared_preload_libraries" and "timescaledb" not in value:
        raise ValueError("shared_preload_libraries must keep timescaledb")
    return (name, value)


# --------------------------------------------------------------------------------------------------
# Image references
# --------------------------------------------------------------------------------------------------

_IMAGE_RE = re.compile(
    r"(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """A parsed container image reference: ``repo:tag`` with an optional ``@sha256:`` digest."""

    repository: str
    """Registry and repository, e.g. ``timescale/timescaledb``."""
    tag: str
    """The tag; always present (``latest`` is refused)."""
    digest: str | None
    """``sha256:<64 hex>`` when pinned, else None."""

    @property
    def reference(self) -> str:
        """The full reference to pull: ``repo:tag[@digest]``."""
        base = f"{self.repository}:{self.tag}"
        return f"{base}@{self.digest}" if self.digest else base

    @property
    def pg_major(self) -> int | None:
        """The PostgreSQL major version named by the tag (``2.19.3-pg17`` -> 17), if any."""
        match = re.search(r"pg(\d{2})", self.tag)
        return int(match.group(1)) if match else None


def parse_image(raw: str) -> ImageRef:
    """Parse ``repo:tag[@sha256:digest]``; a tag is required and ``latest`` refused."""
    match = _IMAGE_RE.fullmatch(raw.strip())
    if not match:
        raise ValueError("expected an image reference repo:tag[@sha256:<64 hex>]")
    tag = match.group("tag")
    if not tag:
        raise ValueError("expected an explicit tag (repo:tag); an untagged image floats")
    if tag == "latest":
        raise ValueError("the tag 'latest' floats; name a version tag")
    return ImageRef(repository=match.group("repo"), tag=tag, digest=match.group("digest"))


def _db_image(raw: str) -> ImageRef:
    ref = parse_image(raw)
    if ref.pg_major is None:
        raise ValueError(
            "expected a tag that names the PostgreSQL major, e.g. timescale/timescaledb:2.19.3-pg17"
        )
    return ref


# --------------------------------------------------------------------------------------------------
# The specification of every key
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One config key of the ``ms5`` namespace."""

    key: str
    """Key without namespace (``dbImage``)."""
    type: ConfigType
    """The Pulumi.yaml schema type."""
    description: str
    """One sentence for Pulumi.yaml and the README."""
    parse: Parser
    """Turns the raw string into the typed value, or raises ValueError saying what is expected."""
    default: object = None
    """Default (a YAML value); None means optional-without-default (secrets) or required."""
    secret: bool = False
    """The value is a secret: read as one, never echoed."""
    group: str = "general"
    """README section."""

    @property
    def qualified(self) -> str:
        return f"{NAMESPACE}:{self.key}"

    @property
    def declared_in_project(self) -> bool:
        """Whether Pulumi.yaml declares the key.

        The CLI treats a declared key without a default as required, so optional secrets (generated
        when absent) are documented but not declared.
        """
        return self.default is not None


def _migrations_dir(raw: str) -> str:
    if "\x00" in raw:
        raise ValueError("expected a directory path")
    return raw.strip()


def _migration_repair(raw: str) -> str:
    from ms5_components.migrations.plan import RepairEntry

    return str(RepairEntry.parse(raw))


# ---- monitoring parsers (issue 4) ----------------------------------------------------------------


def _image(raw: str) -> ImageRef:
    return parse_image(raw)


def _grafana_password(raw: str) -> Secret:
    if raw.strip().lower() == "admin":
        raise ValueError("Grafana's default password admin is refused (the value is not shown)")
    return _password(raw)


SPECS: tuple[Spec, ...] = (
    # ---- general -------------------------------------------------------------------------------
    Spec(
        key="environment",
        type="string",
        default="staging",
        parse=_enum("development", "staging", "production"),
        description="Deployment tier. production requires image digests and turns on data "
        "protection checks.",
    ),
    Spec(
        key="dockerHost",
        type="string",
        default="unix:///var/run/docker.sock",
        parse=_docker_host,
        description="Docker engine endpoint the stack deploys to (unix://, tcp:// or ssh://).",
    ),
    Spec(
        key="bindAddress",
        type="string",
        default="127.0.0.1",
        parse=_ip_address,
        description="Host address every published port binds to; keep 127.0.0.1 unless a proxy "
        "or firewall fronts the host.",
    ),
    Spec(
        key="protectData",
        type="boolean",
        default=True,
        parse=_boolean,
        description="protect + retain_on_delete on the data and backup volumes: `pulumi destroy` "
        "cannot delete them.",
    ),
    Spec(
        key="preflightMinFreeDiskGb",
        type="integer",
        default=10,
        parse=_integer(1, 1_000_000),
        description="Minimum free space (GiB) on Docker's data root before the database starts.",
    ),
    # ---- database ------------------------------------------------------------------------------
    Spec(
        key="dbImage",
        type="string",
        default="timescale/timescaledb:2.19.3-pg17",
        parse=_db_image,
        group="database",
        description="TimescaleDB image repo:tag (tag names the PostgreSQL major, e.g. -pg17); "
        "production also needs @sha256:<digest>.",
    ),
    Spec(
        key="dbName",
        type="string",
        default="ms5",
        parse=_IDENTIFIER,
        group="database",
        description="Name of the application database. Changing it replaces the container.",
    ),
    Spec(
        key="dbSuperuser",
        type="string",
        default="postgres",
        parse=_IDENTIFIER,
        group="database",
        description="Name of the superuser created at first initialisation.",
    ),
    Spec(
        key="dbPassword",
        type="string",
        secret=True,
        parse=_password,
        group="database",
        description="Superuser password (secret, at least 16 characters). Generated and kept in "
        "state (encrypted) when not set. Set with `pulumi config set --secret ms5:dbPassword`.",
    ),
    Spec(
        key="dbPort",
        type="integer",
        default=5432,
        parse=_integer(1, 65535),
        group="database",
        description="Host port the database is published on (bound to bindAddress).",
    ),
    Spec(
        key="dbMemoryMb",
        type="integer",
        default=2048,
        parse=_integer(512, 4_194_304),
        group="database",
        description="Container memory limit in MiB; the server settings are tuned from it.",
    ),
    Spec(
        key="dbCpus",
        type="integer",
        default=2,
        parse=_integer(1, 256),
        group="database",
        description="Container CPU limit (whole CPUs); parallelism settings are tuned from it.",
    ),
    Spec(
        key="dbMaxConnections",
        type="integer",
        default=100,
        parse=_integer(10, 10_000),
        group="database",
        description="max_connections; work_mem is divided among them.",
    ),
    Spec(
        key="dbShmSizeMb",
        type="integer",
        default=256,
        parse=_integer(64, 1_048_576),
        group="database",
        description="Size of /dev/shm in MiB (parallel query workers use it); below dbMemoryMb.",
    ),
    Spec(
        key="dbServerSettings",
        type="array",
        default=[],
        parse=_string_list(_server_setting),
        group="database",
        description="Server setting overrides as name=value (e.g. work_mem=64MB); they win over "
        "the tuned values.",
    ),
    Spec(
        key="dbTelemetry",
        type="string",
        default="off",
        parse=_enum("off", "basic"),
        group="database",
        description="timescaledb.telemetry_level.",
    ),
    Spec(
        key="dbLogMinDurationMs",
        type="integer",
        default=500,
        parse=_integer(-1, 86_400_000),
        group="database",
        description="log_min_duration_statement in ms: statements slower than this are logged "
        "(-1 turns it off).",
    ),
    Spec(
        key="dbHealthTimeoutSeconds",
        type="integer",
        default=300,
        parse=_integer(10, 3600),
        group="database",
        description="How long `pulumi up` waits for the database to become healthy before failing "
        "(the container is kept for diagnosis).",
    ),
    Spec(
        key="dbRestartPolicy",
        type="string",
        default="unless-stopped",
        parse=_enum("no", "on-failure", "always", "unless-stopped"),
        group="database",
        description="Docker restart policy of the database container.",
    ),
    Spec(
        key="dbLogMaxSize",
        type="string",
        default="50m",
        parse=_pattern(r"[1-9][0-9]*[kmg]", "a size such as 50m (k, m or g)"),
        group="database",
        description="Container log rotation: size of one json-file log before it rotates.",
    ),
    Spec(
        key="dbLogMaxFiles",
        type="integer",
        default=5,
        parse=_integer(1, 100),
        group="database",
        description="Container log rotation: rotated files kept.",
    ),
    # ---- migrations (issue 3) ------------------------------------------------------------------
    Spec(
        key="migrationsDir",
        type="string",
        default="",
        parse=_migrations_dir,
        group="migrations",
        description="Directory of the versioned SQL migrations (V<version>__<description>.sql), "
        "relative to the project directory; empty means the repository's migrations/ (the MS5.0 "
        "schema).",
    ),
    Spec(
        key="migrationLockTimeoutMs",
        type="integer",
        default=5000,
        parse=_integer(100, 3_600_000),
        group="migrations",
        description="lock_timeout of every migration statement (ms): a migration never queues "
        "long behind a table lock, nor holds up the queries queued behind it.",
    ),
    Spec(
        key="migrationStatementTimeoutMs",
        type="integer",
        default=600_000,
        parse=_integer(1000, 86_400_000),
        group="migrations",
        description="statement_timeout of every migration statement (ms).",
    ),
    Spec(
        key="migrationLockRetries",
        type="integer",
        default=3,
        parse=_integer(0, 100),
        group="migrations",
        description="How often a migration that hit lock_timeout is retried (with backoff) "
        "before the deploy fails.",
    ),
    Spec(
        key="migrationAdvisoryLockWaitSeconds",
        type="integer",
        default=300,
        parse=_integer(1, 86_400),
        group="migrations",
        description="How long a deploy waits for another migration runner (another `pulumi up`) "
        "to finish before failing.",
    ),
    Spec(
        key="migrationRepair",
        type="array",
        default=[],
        parse=_string_list(_migration_repair),
        group="migrations",
        description="Accept a changed or deleted applied migration once: entries <version> or "
        "<version>:<sha256> (the drift error prints the exact entry); remove them after the "
        "deploy.",
    ),
    # ---- monitoring (issue 4) ------------------------------------------------------------------
    Spec(
        key="monitoringEnabled",
        type="boolean",
        default=True,
        parse=_boolean,
        group="monitoring",
        description="Deploy postgres_exporter, Prometheus (with a Pushgateway) and Grafana.",
    ),
    Spec(
        key="exporterImage",
        type="string",
        default="quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
        parse=_image,
        group="monitoring",
        description="postgres_exporter image repo:tag (0.17.x, the version the tests run); "
        "production also needs @sha256:<digest>.",
    ),
    Spec(
        key="exporterPassword",
        type="string",
        secret=True,
        parse=_password,
        group="monitoring",
        description="Password of the exporter's pg_monitor role (secret, at least 16 "
        "characters); generated and kept in state when not set. A change is applied with "
        "ALTER ROLE.",
    ),
    Spec(
        key="exporterMemoryMb",
        type="integer",
        default=128,
        parse=_integer(32, 65_536),
        group="monitoring",
        description="Memory limit of the exporter container in MiB.",
    ),
    Spec(
        key="exporterTopN",
        type="integer",
        default=20,
        parse=_integer(1, 1000),
        group="monitoring",
        description="Hypertables, jobs and continuous aggregates reported one by one; the rest "
        "are aggregated into one _other series (bounded cardinality).",
    ),
    Spec(
        key="prometheusImage",
        type="string",
        default="prom/prometheus:v2.53.3",
        parse=_image,
        group="monitoring",
        description="Prometheus image repo:tag; production also needs @sha256:<digest>.",
    ),
    Spec(
        key="prometheusPort",
        type="integer",
        default=9090,
        parse=_integer(1, 65535),
        group="monitoring",
        description="Host port of the Prometheus UI/API (bound to bindAddress).",
    ),
    Spec(
        key="prometheusRetention",
        type="string",
        default="15d",
        parse=_pattern(r"[1-9][0-9]*(h|d|w|y)", "a duration such as 15d (h, d, w or y)"),
        group="monitoring",
        description="How long Prometheus keeps samples (--storage.tsdb.retention.time).",
    ),
    Spec(
        key="prometheusRetentionSize",
        type="string",
        default="5GB",
        parse=_pattern(r"[1-9][0-9]*(MB|GB|TB)", "a size such as 5GB (MB, GB or TB)"),
        group="monitoring",
        description="Disk Prometheus may use before dropping the oldest blocks "
        "(--storage.tsdb.retention.size).",
    ),
    Spec(
        key="prometheusMemoryMb",
        type="integer",
        default=1024,
        parse=_integer(128, 1_048_576),
        group="monitoring",
        description="Memory limit of the Prometheus container in MiB.",
    ),
    Spec(
        key="pushgatewayImage",
        type="string",
        default="prom/pushgateway:v1.11.0",
        parse=_image,
        group="monitoring",
        description="Pushgateway image repo:tag (batch results: backups, restore drills, "
        "benchmarks); production also needs @sha256:<digest>.",
    ),
    Spec(
        key="pushgatewayPort",
        type="integer",
        default=9091,
        parse=_integer(1, 65535),
        group="monitoring",
        description="Host port batch jobs push to (bound to bindAddress).",
    ),
    Spec(
        key="grafanaImage",
        type="string",
        default="grafana/grafana:12.1.1",
        parse=_image,
        group="monitoring",
        description="Grafana image repo:tag; production also needs @sha256:<digest>.",
    ),
    Spec(
        key="grafanaPort",
        type="integer",
        default=3000,
        parse=_integer(1, 65535),
        group="monitoring",
        description="Host port of Grafana (bound to bindAddress).",
    ),
    Spec(
        key="grafanaAdminUser",
        type="string",
        default="ms5admin",
        parse=_pattern(r"[A-Za-z][A-Za-z0-9_.-]{2,63}", "a login name of 3 to 64 characters"),
        group="monitoring",
        description="Grafana administrator login.",
    ),
    Spec(
        key="grafanaAdminPassword",
        type="string",
        secret=True,
        parse=_grafana_password,
        group="monitoring",
        description="Grafana administrator password (secret, at least 16 characters, never "
        "admin); generated and kept in state when not set. A change is applied at the next "
        "container start (grafana cli reset-admin-password).",
    ),
    Spec(
        key="grafanaDbPassword",
        type="string",
        secret=True,
        parse=_password,
        group="monitoring",
        description="Password of the read-only role behind Grafana's PostgreSQL datasource "
        "(secret); generated when not set. A change is applied with ALTER ROLE.",
    ),
    Spec(
        key="grafanaMemoryMb",
        type="integer",
        default=512,
        parse=_integer(128, 65_536),
        group="monitoring",
        description="Memory limit of the Grafana container in MiB.",
    ),
    Spec(
        key="backupMaxAgeHours",
        type="integer",
        default=26,
        parse=_integer(1, 8760),
        group="monitoring",
        description="Alert (warning) when the last verified backup is older than this; twice "
        "this is critical.",
    ),
    Spec(
        key="restoreDrillMaxAgeHours",
        type="integer",
        default=192,
        parse=_integer(1, 8760),
        group="monitoring",
        description="Alert (warning) when the last successful restore drill is older than "
        "this; twice this is critical.",
    ),
    Spec(
        key="alertStorageBudgetGb",
        type="integer",
        default=50,
        parse=_integer(1, 1_000_000),
        group="monitoring",
        description="Disk the database may use (data + WAL) in GiB: storage alerts fire at 80 "
        "% / 90 % of it and when growth would exceed it within 7 days / 1 day.",
    ),
)

SPECS_BY_KEY: Mapping[str, Spec] = {spec.key: spec for spec in SPECS}


# --------------------------------------------------------------------------------------------------
# Typed settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """Validated settings of the TimescaleDB container."""

    image: ImageRef
    name: str
    superuser: str
    password: Secret | None
    """None: a password is generated (pulumi-random) and kept, encrypted, in state."""
    port: int
    memory_mb: int
    cpus: int
    max_connections: int
    shm_size_mb: int
    server_settings: tuple[tuple[str, str], ...]
    telemetry: str
    log_min_duration_ms: int
    health_timeout_seconds: int
    restart_policy: str
    log_max_size: str
    log_max_files: int


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of one stack, validated."""

    project: str
    stack: str
    environment: Environment
    docker_host: str
    bind_address: str
    protect_data: bool
    preflight_min_free_disk_gb: int
    database: DatabaseSettings
    raw: Mapping[str, object] = field(repr=False, default_factory=dict)
    """Parsed value of every key (secrets as :class:`Secret`), for components added later."""

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def prefix(self) -> str:
        """Prefix of every Docker object name: two stacks can share one host."""
        return f"{self.project}-{self.stack}"


def _describe(spec: Spec, raw: str) -> str:
    return "(secret, not shown)" if spec.secret else repr(raw)


def _default_raw(spec: Spec) -> str | None:
    if spec.default is None:
        return None
    if isinstance(spec.default, bool):
        return "true" if spec.default else "false"
    if isinstance(spec.default, list):
        return json.dumps(spec.default)
    return str(spec.default)


def load_settings(
    raw_config: Mapping[str, str], *, stack: str, project: str = NAMESPACE
) -> Settings:
    """Validate the raw config of one stack (keys ``ms5:<key>``, values as Pulumi passes them).

    Raises :class:`SettingsErrors` listing every bad key at once.
    """
    errors: list[SettingsError] = []
    values: dict[str, object] = {}
    prefix = f"{project}:"
    for full_key in sorted(raw_config):
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        if key not in SPECS_BY_KEY:
            close = difflib.get_close_matches(key, list(SPECS_BY_KEY), n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else "see the settings reference"
            errors.append(
                SettingsError(
                    full_key, f"unknown setting; {hint} (remove it with `pulumi config rm`)"
                )
            )
    for spec in SPECS:
        raw = raw_config.get(f"{prefix}{spec.key}")
        if raw is None:
            raw = _default_raw(spec)
        if raw is None:
            values[spec.key] = None
            continue
        try:
            values[spec.key] = spec.parse(raw)
        except ValueError as exc:
            errors.append(
                SettingsError(f"{prefix}{spec.key}", f"got {_describe(spec, raw)}; {exc}")
            )
    if errors:
        raise SettingsErrors(errors)

    env = values["environment"]
    image = values["dbImage"]
    assert isinstance(image, ImageRef)
    if env == "production" and image.digest is None:
        errors.append(
            SettingsError(
                f"{prefix}dbImage",
                f"got {image.reference!r}; production needs a pinned digest "
                "repo:tag@sha256:<64 hex> (find it with `docker buildx imagetools inspect "
                f"{image.reference}`)",
            )
        )
    # Monitoring images (issue 4): pinned by digest in production, like dbImage.
    for key in ("exporterImage", "prometheusImage", "pushgatewayImage", "grafanaImage"):
        ref = values[key]
        if env == "production" and isinstance(ref, ImageRef) and ref.digest is None:
            errors.append(
                SettingsError(
                    f"{prefix}{key}",
                    f"got {ref.reference!r}; production needs a pinned digest "
                    "repo:tag@sha256:<64 hex> (find it with `docker buildx imagetools inspect "
                    f"{ref.reference}`)",
                )
            )
    memory = values["dbMemoryMb"]
    shm = values["dbShmSizeMb"]
    assert isinstance(memory, int) and isinstance(shm, int)
    if shm >= memory:
        errors.append(
            SettingsError(
                f"{prefix}dbShmSizeMb",
                f"got {shm}; expected less than ms5:dbMemoryMb ({memory})",
            )
        )
    overrides = values["dbServerSettings"]
    assert isinstance(overrides, tuple)
    seen: set[str] = set()
    for name, _ in overrides:
        if name in seen:
            errors.append(
                SettingsError(f"{prefix}dbServerSettings", f"{name} is set twice; keep one")
            )
        seen.add(name)
    if errors:
        raise SettingsErrors(errors)

    def get(key: str) -> object:
        return values[key]

    password = get("dbPassword")
    database = DatabaseSettings(
        image=image,
        name=str(get("dbName")),
        superuser=str(get("dbSuperuser")),
        password=password if isinstance(password, Secret) else None,
        port=_as_int(get("dbPort")),
        memory_mb=memory,
        cpus=_as_int(get("dbCpus")),
        max_connections=_as_int(get("dbMaxConnections")),
        shm_size_mb=shm,
        server_settings=tuple(overrides),
        telemetry=str(get("dbTelemetry")),
        log_min_duration_ms=_as_int(get("dbLogMinDurationMs")),
        health_timeout_seconds=_as_int(get("dbHealthTimeoutSeconds")),
        restart_policy=str(get("dbRestartPolicy")),
        log_max_size=str(get("dbLogMaxSize")),
        log_max_files=_as_int(get("dbLogMaxFiles")),
    )
    environment: Environment = (
        "production"
        if env == "production"
        else ("development" if env == "development" else "staging")
    )
    return Settings(
        project=project,
        stack=stack,
        environment=environment,
        docker_host=str(get("dockerHost")),
        bind_address=str(get("bindAddress")),
        protect_data=bool(get("protectData")),
        preflight_min_free_disk_gb=_as_int(get("preflightMinFreeDiskGb")),
        database=database,
        raw=dict(values),
    )


def _as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def from_pulumi_config() -> Settings:
    """Read the running program's config (the only reader of config in the project)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    merged: dict[str, str] = {}
    merged.update({k: str(v) for k, v in runtime_config.get_config_env().items()})
    merged.update({k: str(v) for k, v in runtime_config.CONFIG.get().items()})
    return load_settings(
        merged, stack=pulumi.get_stack(), project=pulumi.get_project() or NAMESPACE
    )
