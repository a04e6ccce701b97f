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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from ms5_components.docker_endpoint import DockerEndpointError, Endpoint, resolve_docker_host
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


@dataclass(frozen=True)
class _Integer:
    """Parser of a whole number within ``lo``..``hi`` (the limits are read by :func:`limits_of`)."""

    lo: int
    hi: int

    def __call__(self, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number from {self.lo} to {self.hi}") from None
        if not self.lo <= value <= self.hi:
            raise ValueError(f"expected a whole number from {self.lo} to {self.hi}")
        return value


def _integer(lo: int, hi: int) -> Parser:
    return _Integer(lo, hi)


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
    if raw == "":
        return raw  # follow the Docker CLI (see ms5_components.docker_endpoint)
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


# ---- monitoring parsers ----------------------------------------------------------------


def _image(raw: str) -> ImageRef:
    return parse_image(raw)


def _grafana_password(raw: str) -> Secret:
    if raw.strip().lower() == "admin":
        raise ValueError("Grafana's default password admin is refused (the value is not shown)")
    return _password(raw)


# ---- verification and benchmark parsers ----------------------------------------------------------


def _verification_check(raw: str) -> str:
    from ms5_components.verification.report import CHECKS

    if raw not in CHECKS:
        raise ValueError(f"expected one of: {', '.join(CHECKS)}")
    return raw


def _backup_source(raw: str) -> str:
    if raw in ("none", "pushgateway") or (raw.startswith("dir:") and len(raw) > 4):
        return raw
    raise ValueError("expected none, pushgateway or dir:<path of the backup directory>")


def _run_id(raw: str) -> str:
    if len(raw) > 64 or any(ch.isspace() for ch in raw):
        raise ValueError("expected up to 64 characters without white space")
    return raw


# ---- backups -------------------------------------------------------------------------------------


def _backup_label(raw: str) -> str:
    if raw and not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,39}", raw):
        raise ValueError("expected empty or a label of up to 40 characters [a-z0-9._-]")
    return raw


_DAILY_SCHEDULE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_EVERY_SCHEDULE = re.compile(r"every ([1-9][0-9]{0,4})(m|h)")


def backup_schedule_seconds(schedule: str) -> int | None:
    """The time between two scheduled backups of an ``ms5:backupSchedule`` value, as the
    scheduler's loop waits it: ``HH:MM`` is daily (86400 s); ``every <N>m`` / ``every <N>h`` is
    N minutes / hours after the previous cycle ended. None for text of neither form."""
    if _DAILY_SCHEDULE.fullmatch(schedule):
        return 86_400
    match = _EVERY_SCHEDULE.fullmatch(schedule)
    if match is None:
        return None
    return int(match[1]) * (60 if match[2] == "m" else 3600)


def _backup_schedule(raw: str) -> str:
    seconds = backup_schedule_seconds(raw)
    if seconds is not None and seconds >= 300:
        return raw
    raise ValueError("expected HH:MM (daily, UTC) or every <N>m (N >= 5) / every <N>h")


BACKUP_SPECS: tuple[Spec, ...] = (
    Spec(
        key="backupEnabled",
        type="boolean",
        default=True,
        parse=_boolean,
        group="backups",
        description="Back up before risky changes (pending migrations, a replaced database "
        "container or image, a new backupLabel) and on schedule; production requires true.",
    ),
    Spec(
        key="backupMandatory",
        type="boolean",
        default=True,
        parse=_boolean,
        group="backups",
        description="A failed pre-change backup stops the deploy before the change; "
        "production requires true.",
    ),
    Spec(
        key="backupJobs",
        type="integer",
        default=2,
        parse=_integer(1, 64),
        group="backups",
        description="Parallel jobs of pg_dump and pg_restore (directory format).",
    ),
    Spec(
        key="backupCompression",
        type="string",
        default="gzip:6",
        parse=_pattern(
            r"none|(gzip|lz4|zstd)(:[0-9]{1,2})?", "none, gzip[:1-9], lz4[:N] or zstd[:N]"
        ),
        group="backups",
        description="pg_dump --compress of the backup files.",
    ),
    Spec(
        key="backupKeepCount",
        type="integer",
        default=7,
        parse=_integer(0, 10_000),
        group="backups",
        description="Verified backups kept (newest first; 0: no count limit). The newest "
        "verified backup is never deleted.",
    ),
    Spec(
        key="backupMaxAgeDays",
        type="integer",
        default=30,
        parse=_integer(0, 36_500),
        group="backups",
        description="Backups older than this many days are pruned (0: no age limit), except "
        "the newest verified one.",
    ),
    Spec(
        key="backupSchedule",
        type="string",
        default="02:30",
        parse=_backup_schedule,
        group="backups",
        description="When the backup service backs up without a deploy: HH:MM daily (UTC) or "
        "every <N>m / every <N>h.",
    ),
    Spec(
        key="backupLabel",
        type="string",
        default="",
        parse=_backup_label,
        group="backups",
        description="Changing it takes a backup on demand at the next deploy, recorded with "
        "this label.",
    ),
    Spec(
        key="backupLockWaitSeconds",
        type="integer",
        default=60,
        parse=_integer(1, 3600),
        group="backups",
        description="Longest a backup waits for a table lock (e.g. a migration's) or for "
        "another running backup before it fails cleanly.",
    ),
    Spec(
        key="backupTimeoutSeconds",
        type="integer",
        default=21_600,
        parse=_integer(60, 604_800),
        group="backups",
        description="Longest one backup or restore drill may run.",
    ),
    Spec(
        key="restoreDrillAfterBackup",
        type="boolean",
        default=True,
        parse=_boolean,
        group="backups",
        description="Restore every new backup into a scratch database on the same server and "
        "compare it with its manifest (records the RTO); production requires true.",
    ),
    Spec(
        key="backupSchedulerEnabled",
        type="boolean",
        default=True,
        parse=_boolean,
        group="backups",
        description="Run the backup service container (the database image running the backup "
        "script on backupSchedule).",
    ),
)


@dataclass(frozen=True, kw_only=True)
class BackupConfig:
    """Validated ``ms5:backup*`` settings."""

    enabled: bool = True
    mandatory: bool = True
    jobs: int = 2
    compression: str = "gzip:6"
    keep_count: int = 7
    max_age_days: int = 30
    schedule: str = "02:30"
    label: str = ""
    lock_wait_seconds: int = 60
    timeout_seconds: int = 21_600
    drill_after_backup: bool = True
    scheduler_enabled: bool = True

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> BackupConfig:
        def num(key: str) -> int:
            value = values[key]
            assert isinstance(value, int)
            return value

        return cls(
            enabled=bool(values["backupEnabled"]),
            mandatory=bool(values["backupMandatory"]),
            jobs=num("backupJobs"),
            compression=str(values["backupCompression"]),
            keep_count=num("backupKeepCount"),
            max_age_days=num("backupMaxAgeDays"),
            schedule=str(values["backupSchedule"]),
            label=str(values["backupLabel"]),
            lock_wait_seconds=num("backupLockWaitSeconds"),
            timeout_seconds=num("backupTimeoutSeconds"),
            drill_after_backup=bool(values["restoreDrillAfterBackup"]),
            scheduler_enabled=bool(values["backupSchedulerEnabled"]),
        )


def _backup_errors(values: Mapping[str, object], env: object, prefix: str) -> list[SettingsError]:
    """Production keeps its safety net: backups on, mandatory, drilled."""
    if env != "production":
        return []
    return [
        SettingsError(f"{prefix}{key}", f"got false; production requires true ({why})")
        for key, why in (
            ("backupEnabled", "every risky change is preceded by a backup"),
            ("backupMandatory", "a failed backup must stop the change"),
            ("restoreDrillAfterBackup", "every backup is proven restorable"),
        )
        if values.get(key) is False
    ]


SPECS: tuple[Spec, ...] = (
    # ---- general -------------------------------------------------------------------------------
    Spec(
        key="environment",
        type="string",
        default="staging",
        parse=_enum("development", "staging", "production"),
        description="Deployment tier. production requires image digests (`./ms5 pin-images "
        "production`) and protectData true.",
    ),
    Spec(
        key="dockerHost",
        type="string",
        default="",
        parse=_docker_host,
        description="Docker engine endpoint the stack deploys to (unix://, tcp:// or ssh://); "
        "empty means the Docker CLI's engine: DOCKER_HOST, else the current Docker context "
        "(DOCKER_CONTEXT, then the CLI config's currentContext), else "
        "unix:///var/run/docker.sock.",
    ),
    Spec(
        key="bindAddress",
        type="string",
        default="127.0.0.1",
        parse=_ip_address,
        description="Host address every published port binds to; keep 127.0.0.1 unless a proxy "
        "or firewall fronts the host. An address outside loopback needs allowNonLoopbackBind.",
    ),
    Spec(
        key="allowNonLoopbackBind",
        type="boolean",
        default=False,
        parse=_boolean,
        description="Set true to publish ports on a non-loopback bindAddress on purpose (a "
        "firewall or proxy fronts the host); containers that publish a port then carry the label "
        "ms5.allow-non-loopback-bind=true, which the policy pack accepts.",
    ),
    Spec(
        key="protectData",
        type="boolean",
        default=True,
        parse=_boolean,
        description="protect + retain_on_delete on the data and backup volumes: `pulumi destroy` "
        "cannot delete them. Always true in production.",
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
    # ---- migrations ------------------------------------------------------------------
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
    # ---- monitoring ------------------------------------------------------------------
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
        "this is critical. Also the verification's backup age limit on a stack without the backup "
        "scheduler (with it, the limit is one backupSchedule period plus backupTimeoutSeconds).",
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
    # ---- verification and benchmarks -----------------------------------------------------------
    Spec(
        key="verificationEnabled",
        type="boolean",
        default=True,
        parse=_boolean,
        group="verification",
        description="Verify the stack at the end of every deploy (a failing check fails the "
        "deploy with a per-check report, also the stack output verificationReport).",
    ),
    Spec(
        key="verificationWarnOnly",
        type="array",
        default=[],
        parse=_string_list(_verification_check),
        group="verification",
        description="Checks whose failures only warn on this stack (extension, hypertables, "
        "indexes, columnstore, retention, continuous_aggregates, jobs, exporter, prometheus, "
        "pushgateway, grafana, dashboard, backup).",
    ),
    Spec(
        key="verificationRunId",
        type="string",
        default="",
        parse=_run_id,
        group="verification",
        description="Change it (any text) to run the verification again on the next `pulumi up` "
        "although nothing it checks changed.",
    ),
    Spec(
        key="verificationBackupSource",
        type="string",
        default="pushgateway",
        parse=_backup_source,
        group="verification",
        description="Where the newest verified backup is read from: pushgateway (the backup "
        "runner's ms5_backup_last_success_timestamp_seconds), dir:<path> (the backup directory "
        "as mounted on the deploying host) or none.",
    ),
    Spec(
        key="verificationSettleSeconds",
        type="integer",
        default=60,
        parse=_integer(0, 3600),
        group="verification",
        description="How long the verification waits for Prometheus to have scraped every target "
        "after a deploy before judging them.",
    ),
    Spec(
        key="verificationTimeoutSeconds",
        type="integer",
        default=10,
        parse=_integer(1, 600),
        group="verification",
        description="Timeout of each check's HTTP request or statement.",
    ),
    Spec(
        key="benchmarkEnabled",
        type="boolean",
        default=True,
        parse=_boolean,
        group="benchmark",
        description="Run the ingest/query/compression benchmark after the verification (in a "
        "scratch schema, dropped afterwards).",
    ),
    Spec(
        key="benchmarkRunId",
        type="string",
        default="",
        parse=_run_id,
        group="benchmark",
        description="Change it to run the benchmark again on the next `pulumi up` although "
        "nothing it depends on changed.",
    ),
    Spec(
        key="benchmarkRows",
        type="integer",
        default=100_000,
        parse=_integer(1_000, 100_000_000),
        group="benchmark",
        description="Rows the ingest benchmark writes (machine_metrics model, 24 h of data).",
    ),
    Spec(
        key="benchmarkBatchSize",
        type="integer",
        default=5_000,
        parse=_integer(100, 1_000_000),
        group="benchmark",
        description="Rows per binary COPY batch (one transaction each).",
    ),
    Spec(
        key="benchmarkWorkers",
        type="integer",
        default=2,
        parse=_integer(1, 64),
        group="benchmark",
        description="Parallel ingest connections.",
    ),
    Spec(
        key="benchmarkQueryRuns",
        type="integer",
        default=20,
        parse=_integer(3, 10_000),
        group="benchmark",
        description="Timed runs of each benchmark query (after the warm-up runs).",
    ),
    Spec(
        key="benchmarkWarmupRuns",
        type="integer",
        default=3,
        parse=_integer(0, 1_000),
        group="benchmark",
        description="Untimed warm-up runs of each benchmark query.",
    ),
    Spec(
        key="benchmarkMinIngestRowsPerSecond",
        type="integer",
        default=1_000,
        parse=_integer(1, 1_000_000_000),
        group="benchmark",
        description="Threshold: ingest throughput at least this many rows/s.",
    ),
    Spec(
        key="benchmarkMaxQueryP95Ms",
        type="integer",
        default=100,
        parse=_integer(1, 3_600_000),
        group="benchmark",
        description="Threshold: every benchmark query's p95 latency at most this many ms.",
    ),
    Spec(
        key="benchmarkMinCompressionPercent",
        type="integer",
        default=70,
        parse=_integer(0, 100),
        group="benchmark",
        description="Threshold (Timescale license): compressing the benchmark's chunks saves at "
        "least this percentage of their size.",
    ),
    Spec(
        key="benchmarkGate",
        type="string",
        default="auto",
        parse=_enum("auto", "warn", "fail"),
        group="benchmark",
        description="A missed threshold fails the deploy (fail) or is reported (warn); auto: "
        "fail in production, warn elsewhere.",
    ),
    Spec(
        key="benchmarkMaxRegressionPercent",
        type="integer",
        default=25,
        parse=_integer(0, 1_000),
        group="benchmark",
        description="Report a regression when throughput falls, or a query's p95 rises, by more "
        "than this percentage against the previous run on the stack (0: off).",
    ),
    Spec(
        key="benchmarkGateOnRegression",
        type="boolean",
        default=False,
        parse=_boolean,
        group="benchmark",
        description="A reported regression fails the deploy where the benchmark gates "
        "(production under auto).",
    ),
    Spec(
        key="benchmarkTimeBudgetSeconds",
        type="integer",
        default=60,
        parse=_integer(5, 3_600),
        group="benchmark",
        description="The whole benchmark must finish within this time; it is stopped (scratch "
        "schema dropped) and fails when it does not.",
    ),
    # ---- backups (their own block above) ------------------------------------------------------
    *BACKUP_SPECS,
)

SPECS_BY_KEY: Mapping[str, Spec] = {spec.key: spec for spec in SPECS}


def default_of(key: str) -> object:
    """The declared default of ``ms5:<key>`` (the one place a default is written)."""
    return SPECS_BY_KEY[key].default


def int_default_of(key: str) -> int:
    """The declared default of the integer setting ``ms5:<key>``."""
    value = default_of(key)
    assert isinstance(value, int) and not isinstance(value, bool), key
    return value


def limits_of(key: str) -> tuple[int, int]:
    """The inclusive limits of the integer setting ``ms5:<key>``."""
    parse = SPECS_BY_KEY[key].parse
    assert isinstance(parse, _Integer), key
    return parse.lo, parse.hi


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
    """The resolved Docker endpoint (``ms5:dockerHost``, or the Docker CLI's when unset)."""
    bind_address: str
    protect_data: bool
    preflight_min_free_disk_gb: int
    database: DatabaseSettings
    allow_non_loopback_bind: bool = False
    """ms5:allowNonLoopbackBind: a non-loopback bindAddress is deliberate; containers that
    publish a port carry the label the policy pack accepts it by."""
    docker_host_source: str = "ms5:dockerHost"
    """What chose ``docker_host`` (``ms5:dockerHost``, ``DOCKER_HOST``, a context), for messages."""
    backups: BackupConfig = field(default_factory=BackupConfig)
    """Backups and restore drills (``ms5:backup*``, ``ms5:restoreDrillAfterBackup``)."""
    raw: Mapping[str, object] = field(repr=False, default_factory=dict)
    """Parsed value of every key (secrets as :class:`Secret`), for components added later."""

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def prefix(self) -> str:
        """Prefix of every Docker object name: two stacks can share one host."""
        return f"{self.project}-{self.stack}"


# --------------------------------------------------------------------------------------------------
# Mistakes refused before any resource is created: plain-text secrets, foreign namespaces,
# production safety, non-loopback binds and host port clashes.
# --------------------------------------------------------------------------------------------------

PROVIDER_NAMESPACES = ("docker", "command", "random", "pulumi")
"""Config namespaces besides the project's: the providers the program uses and ``pulumi:``
(the CLI's own keys, e.g. ``pulumi:tags``, ``pulumi:disable-default-providers``)."""

NON_LOOPBACK_BIND_LABEL = "ms5.allow-non-loopback-bind"
"""Container label (value ``true``) set when ms5:allowNonLoopbackBind is true; the policy pack's
``ports-bound-to-loopback`` accepts a non-loopback port on a container that carries it."""

PUBLISHED_PORTS: tuple[tuple[str, str | None], ...] = (
    ("dbPort", None),
    ("prometheusPort", "monitoringEnabled"),
    ("pushgatewayPort", "monitoringEnabled"),
    ("grafanaPort", "monitoringEnabled"),
)
"""Every setting that publishes a host port, with the boolean setting that turns its service on
(None: always on)."""

_WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 (names the wildcard, binds nothing)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 (and the name localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _looks_secret(key: str) -> bool:
    spec = SPECS_BY_KEY.get(key)
    if spec is not None:
        return spec.secret
    return any(word in key.lower() for word in ("password", "secret", "token", "key"))


def namespace_errors(
    raw_config: Mapping[str, str], *, project: str, secret_keys: Collection[str] | None
) -> list[SettingsError]:
    """A key whose namespace is neither the project's nor a provider's (a misspelled ``ms5``)."""
    allowed = (project, *PROVIDER_NAMESPACES)
    errors = []
    for full_key in sorted(raw_config):
        namespace, sep, key = full_key.partition(":")
        if sep and namespace in allowed:
            continue
        secret = _looks_secret(key) or (secret_keys is not None and full_key in secret_keys)
        shown = "(secret, not shown)" if secret else repr(raw_config[full_key])
        lowered = {name.lower(): name for name in allowed}
        close = [
            lowered[m]
            for m in difflib.get_close_matches(namespace.lower(), list(lowered), n=1, cutoff=0.5)
        ]
        if close and close[0] == project:
            target = f"{project}:{key}"
            hint = (
                f"did you mean {target}? Move it: `pulumi config rm {full_key}`, then "
                f"`pulumi config set {'--secret ' if secret else ''}{target} <value>`"
            )
        elif close:
            hint = f"did you mean {close[0]}:{key}? (fix it with `pulumi config rm {full_key}`)"
        else:
            hint = f"remove it with `pulumi config rm {full_key}`"
        errors.append(
            SettingsError(
                full_key,
                f"got {shown}; unknown namespace {namespace!r}: keys are {project}:<setting> or "
                f"a provider's ({', '.join(f'{n}:' for n in PROVIDER_NAMESPACES)}); {hint}",
            )
        )
    return errors


def plaintext_secret_errors(
    raw_config: Mapping[str, str], *, prefix: str, secret_keys: Collection[str]
) -> list[SettingsError]:
    """A secret setting whose value sits in plain text in the stack file (not ``secure:``)."""
    errors = []
    for spec in SPECS:
        key = f"{prefix}{spec.key}"
        if spec.secret and key in raw_config and key not in secret_keys:
            errors.append(
                SettingsError(
                    key,
                    "(secret, not shown) is stored in plain text in the stack file; remove it "
                    f"with `pulumi config rm {key}` and set it encrypted with `pulumi config set "
                    f"--secret {key}` (if the file was committed, choose a new value: the old one "
                    "is in the history)",
                )
            )
    return errors


def production_errors(
    values: Mapping[str, object], *, prefix: str, stack: str
) -> list[SettingsError]:
    """What environment=production promises: every image pinned, data protection on; and the
    stack named production is that environment."""
    environment = values.get("environment")
    if stack == "production" and isinstance(environment, str) and environment != "production":
        return [
            SettingsError(
                f"{prefix}environment",
                f"got {environment!r} in the stack named production, which would drop the "
                "production guarantees (pinned images, protected data): `pulumi config set "
                f"--stack production {prefix}environment production`",
            )
        ]
    if environment != "production":
        return []
    errors = []
    for spec in SPECS:
        ref = values.get(spec.key)
        if isinstance(ref, ImageRef) and ref.digest is None:
            errors.append(
                SettingsError(
                    f"{prefix}{spec.key}",
                    f"got {ref.reference!r}; production needs a pinned digest "
                    f"repo:tag@sha256:<64 hex>: run `./ms5 pin-images {stack}` (it resolves "
                    f"every image tag with your Docker and writes the digests into "
                    f"Pulumi.{stack}.yaml), then review and commit the diff",
                )
            )
    if values.get("protectData") is False:
        errors.append(
            SettingsError(
                f"{prefix}protectData",
                "got 'false'; production keeps its data and backup volumes protected: "
                f"`pulumi config set {prefix}protectData true` (to delete production data on "
                "purpose, follow the README's Destroying safely)",
            )
        )
    return errors


def bind_address_errors(values: Mapping[str, object], *, prefix: str) -> list[SettingsError]:
    """A non-loopback bindAddress publishes every port beyond this host: only on purpose."""
    address = values.get("bindAddress")
    if not isinstance(address, str) or is_loopback(address):
        return []
    if values.get("allowNonLoopbackBind") is True:
        return []
    return [
        SettingsError(
            f"{prefix}bindAddress",
            f"got {address!r}; not a loopback address, so every published port (database, "
            "Prometheus, Pushgateway, Grafana) is reachable from other machines. Keep "
            f"127.0.0.1 (`pulumi config set {prefix}bindAddress 127.0.0.1`) or, when a firewall "
            f"or proxy fronts the host, opt in with `pulumi config set "
            f"{prefix}allowNonLoopbackBind true`",
        )
    ]


@dataclass(frozen=True)
class _Published:
    key: str
    port: int
    origin: str


def _published_ports(values: Mapping[str, object]) -> list[_Published]:
    out = []
    for key, switch in PUBLISHED_PORTS:
        port = values.get(key)
        if isinstance(port, int) and (switch is None or values.get(switch) is not False):
            out.append(_Published(key, port, ""))
    return out


def _other_stack_values(raw: Mapping[str, str], prefix: str) -> tuple[dict[str, object], set[str]]:
    """The parsed port-related values of another stack (defaults filled in), and which keys its
    stack file sets. A value that does not parse there is left out: that stack reports it."""
    wanted = {key for key, _ in PUBLISHED_PORTS} | {s for _, s in PUBLISHED_PORTS if s is not None}
    wanted |= {"dockerHost", "bindAddress"}
    parsed: dict[str, object] = {}
    for key in sorted(wanted):
        spec = SPECS_BY_KEY[key]
        text = raw.get(f"{prefix}{key}")
        source = text if text is not None else _default_raw(spec)
        if source is None:
            continue
        try:
            parsed[key] = spec.parse(source)
        except ValueError:
            continue
    return parsed, {key for key in wanted if f"{prefix}{key}" in raw}


def _addresses_overlap(a: object, b: object) -> bool:
    return a == b or a in _WILDCARDS or b in _WILDCARDS


_CLI_ENGINE = "ms5:dockerHost unset in both: the Docker CLI's engine"


def port_errors(
    values: Mapping[str, object],
    *,
    prefix: str,
    stack: str,
    other_stacks: Mapping[str, Mapping[str, str]] | None,
) -> list[SettingsError]:
    """Two services of this stack on one host port, or a port another stack of the project
    publishes on the same Docker host and address."""
    errors = []
    mine = _published_ports(values)
    taken: dict[int, str] = {}
    used = {p.port for p in mine}
    others: list[tuple[str, _Published, bool]] = []
    for name, raw in sorted((other_stacks or {}).items()):
        if name == stack:
            continue
        their_values, set_in_file = _other_stack_values(raw, prefix)
        if their_values.get("dockerHost") != values.get("dockerHost"):
            continue
        if not _addresses_overlap(their_values.get("bindAddress"), values.get("bindAddress")):
            continue
        for p in _published_ports(their_values):
            others.append((name, p, p.key in set_in_file))
            used.add(p.port)

    def free_after(port: int) -> int:
        candidate = port + 1
        while candidate in used or candidate > 65535:
            candidate = candidate + 1 if candidate < 65535 else 1024
        return candidate

    for p in mine:
        key = f"{prefix}{p.key}"
        if p.port in taken:
            errors.append(
                SettingsError(
                    key,
                    f"got {p.port}; {prefix}{taken[p.port]} of this stack publishes the same "
                    f"host port and each service needs its own: `pulumi config set {key} "
                    f"{free_after(p.port)}`",
                )
            )
            continue
        taken[p.port] = p.key
        for name, theirs, in_file in others:
            if theirs.port != p.port:
                continue
            where = f"set in Pulumi.{name}.yaml" if in_file else "its default"
            errors.append(
                SettingsError(
                    key,
                    f"got {p.port}; stack {name} of this project publishes host port {p.port} "
                    f"({prefix}{theirs.key}, {where}) on the same Docker host "
                    f"({values.get('dockerHost') or _CLI_ENGINE}), and two stacks on one host "
                    "cannot share a "
                    f"port: give one of them another port, e.g. `pulumi config set {key} "
                    f"{free_after(p.port)}`",
                )
            )
    return errors


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
    raw_config: Mapping[str, str],
    *,
    stack: str,
    project: str = NAMESPACE,
    secret_keys: Collection[str] | None = None,
    other_stacks: Mapping[str, Mapping[str, str]] | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Settings:
    """Validate the raw config of one stack (keys ``ms5:<key>``, values as Pulumi passes them).

    ``secret_keys`` are the keys whose value is encrypted (``secure:``) in the stack file; when
    given, a secret setting outside it is refused (None: not known, not checked).
    ``other_stacks`` maps the project's other stacks to their stack-file values (no defaults), so
    that a host port another stack publishes on the same Docker host is refused.
    ``environ`` and ``home`` (default: this process's) decide the Docker endpoint when
    ``ms5:dockerHost`` is unset, as the Docker CLI would.

    Raises :class:`SettingsErrors` listing every bad key at once.
    """
    errors: list[SettingsError] = []
    values: dict[str, object] = {}
    prefix = f"{project}:"
    errors.extend(namespace_errors(raw_config, project=project, secret_keys=secret_keys))
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
    if secret_keys is not None:
        errors.extend(plaintext_secret_errors(raw_config, prefix=prefix, secret_keys=secret_keys))
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
    # Rules across keys: each runs on the values that parsed, so one run reports everything.
    errors.extend(production_errors(values, prefix=prefix, stack=stack))
    errors.extend(_cross_key_errors(values, prefix=prefix))
    errors.extend(bind_address_errors(values, prefix=prefix))
    errors.extend(port_errors(values, prefix=prefix, stack=stack, other_stacks=other_stacks))
    endpoint = _resolve_endpoint(values.get("dockerHost"), environ, home, f"{prefix}dockerHost")
    if isinstance(endpoint, SettingsError):
        errors.append(endpoint)
    errors.extend(_backup_errors(values, values.get("environment"), prefix))
    if errors:
        raise SettingsErrors(errors)
    assert endpoint is not None and not isinstance(endpoint, SettingsError)

    def get(key: str) -> object:
        return values[key]

    env = values["environment"]
    image = values["dbImage"]
    assert isinstance(image, ImageRef)
    memory = _as_int(get("dbMemoryMb"))
    shm = _as_int(get("dbShmSizeMb"))
    overrides = values["dbServerSettings"]
    assert isinstance(overrides, tuple)
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
        docker_host=endpoint.host,
        docker_host_source=endpoint.source,
        bind_address=str(get("bindAddress")),
        protect_data=bool(get("protectData")),
        preflight_min_free_disk_gb=_as_int(get("preflightMinFreeDiskGb")),
        database=database,
        allow_non_loopback_bind=bool(get("allowNonLoopbackBind")),
        backups=BackupConfig.from_values(values),
        raw=dict(values),
    )


def _cross_key_errors(values: Mapping[str, object], *, prefix: str) -> list[SettingsError]:
    errors: list[SettingsError] = []
    memory = values.get("dbMemoryMb")
    shm = values.get("dbShmSizeMb")
    if isinstance(memory, int) and isinstance(shm, int) and shm >= memory:
        errors.append(
            SettingsError(
                f"{prefix}dbShmSizeMb",
                f"got {shm}; expected less than ms5:dbMemoryMb ({memory})",
            )
        )
    overrides = values.get("dbServerSettings")
    seen: set[str] = set()
    for name, _ in overrides if isinstance(overrides, tuple) else ():
        if name in seen:
            errors.append(
                SettingsError(f"{prefix}dbServerSettings", f"{name} is set twice; keep one")
            )
        seen.add(name)
    return errors


def _resolve_endpoint(
    configured: object, environ: Mapping[str, str] | None, home: Path | None, key: str
) -> Endpoint | SettingsError | None:
    """The Docker endpoint; None when ``ms5:dockerHost`` itself did not parse (already reported)."""
    import os

    if not isinstance(configured, str):
        return None
    env = os.environ if environ is None else environ
    try:
        endpoint = resolve_docker_host(configured, env, home or Path.home())
    except DockerEndpointError as exc:
        return SettingsError(key, f"unset, so the Docker CLI's engine is used, but {exc}")
    try:
        _docker_host(endpoint.host)
    except ValueError as exc:
        return SettingsError(key, f"unset; {endpoint.source} gives {endpoint.host!r}: {exc}")
    return endpoint


def _as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def from_pulumi_config(project_dir: Path | None = None) -> Settings:
    """Read the running program's config (the only reader of config in the project).

    Secret keys come from ``PULUMI_CONFIG_SECRET_KEYS`` (set by the language host) and from the
    SDK's own record (``set_all_config``, as mocks and the Automation API use). The project's
    other stack files are read from the directory of ``Pulumi.yaml`` (found from the working
    directory upwards) for their host ports.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    from ms5_components import stack_files

    merged: dict[str, str] = {}
    merged.update({k: str(v) for k, v in runtime_config.get_config_env().items()})
    merged.update({k: str(v) for k, v in runtime_config.CONFIG.get().items()})
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys.update(k for k in merged if runtime_config.is_config_secret(k))
    stack = pulumi.get_stack()
    project_dir = project_dir or stack_files.find_project_dir(Path.cwd())
    other_stacks: dict[str, dict[str, str]] = {}
    if project_dir is not None:
        for name in stack_files.stack_names(project_dir):
            if name == stack:
                continue
            try:
                config = stack_files.read_stack_config(stack_files.stack_file(project_dir, name))
            except (OSError, ValueError, yaml.YAMLError) as exc:
                raise SettingsErrors(
                    [SettingsError(f"Pulumi.{name}.yaml", f"cannot be read ({exc}); fix the file")]
                ) from None
            other_stacks[name] = {
                k: stack_files.config_string(v)
                for k, v in config.items()
                if not stack_files.is_secure(v)
            }
    return load_settings(
        merged,
        stack=stack,
        project=pulumi.get_project() or NAMESPACE,
        secret_keys=secret_keys,
        other_stacks=other_stacks,
    )
