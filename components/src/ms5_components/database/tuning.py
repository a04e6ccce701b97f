"""Server settings computed from the container's limits, the way ``timescaledb-tune`` computes them.

The formulas follow timescaledb-tune's recommenders (memory, parallelism, WAL, miscellaneous) for
Linux, fed with the container's memory and CPU limits instead of the host's. On top come the
settings the platform needs (preloaded libraries, logging, authentication, telemetry, autovacuum
tuned for many chunks). Per-stack overrides (``ms5:dbServerSettings``) win over everything.

Everything here is pure: a test applies the result to a real PostgreSQL 17 + TimescaleDB server and
reads each setting back with ``SHOW``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

KB = 1024
MB = 1024 * KB
GB = 1024 * MB

_BASE_CONNS = 20
_WORK_MEM_PER_GIG_PER_CONN = 6.4 * _BASE_CONNS
_MAINTENANCE_WORK_MEM_LIMIT = 2047 * MB
_MAX_BACKGROUND_WORKERS = 8
_MIN_BUILTIN_PROCESSES = 3
_DEFAULT_MAX_WAL = 1 * GB
_WAL_BUFFERS_THRESHOLD = 2 * GB
_WAL_BUFFERS_DEFAULT = 16 * MB
_MIN_WORK_MEM = 64 * KB


def _round_half_up(value: float) -> int:
    """Go's math.Round (half away from zero) for non-negative values; Python's round() is banker's."""
    return math.floor(value + 0.5)


def pg_bytes(value: int) -> str:
    """Format bytes as timescaledb-tune's BytesToPGFormat does.

    The largest unit the value reaches; a fractional value (beyond 0.001) drops to the next smaller
    unit; kB values are rounded; anything under 1kB becomes 1kB.
    """
    units = (("TB", 1024 * GB), ("GB", GB), ("MB", MB), ("kB", KB))
    for index, (unit, size) in enumerate(units):
        if value >= size:
            amount = value / size
            if unit == "kB":
                return f"{_round_half_up(amount)}kB"
            if amount - int(amount) > 0.001:
                smaller, smaller_size = units[index + 1]
                return f"{int(value / smaller_size)}{smaller}"
            return f"{int(amount)}{unit}"
    return "1kB"


@dataclass(frozen=True, kw_only=True)
class TuningInput:
    """What the settings are computed from."""

    memory_mb: int
    """Container memory limit (MiB)."""
    cpus: int
    """Container CPU limit (whole CPUs)."""
    max_connections: int
    """max_connections; work_mem is divided among them."""
    log_min_duration_ms: int = 500
    """log_min_duration_statement (ms, -1 off)."""
    telemetry: str = "off"
    """timescaledb.telemetry_level."""


def tuned_settings(tune: TuningInput) -> dict[str, str]:
    """timescaledb-tune's recommendations for the given limits (memory, parallelism, WAL, misc)."""
    total = tune.memory_mb * MB
    gigs = total / GB
    conns = max(tune.max_connections, 1)
    cpu_factor = max(_round_half_up(tune.cpus / 2.0), 1)
    work_mem = int(gigs * (_WORK_MEM_PER_GIG_PER_CONN * MB / conns) / cpu_factor)
    maintenance = min(int(gigs * 128 * MB), _MAINTENANCE_WORK_MEM_LIMIT)
    wal_buffers = int(gigs * 7864 * KB) if total < _WAL_BUFFERS_THRESHOLD else _WAL_BUFFERS_DEFAULT
    max_locks = "64"
    for limit_gb, locks in ((32, "512"), (16, "256"), (8, "128")):
        if total >= limit_gb * GB:
            max_locks = locks
            break
    return {
        # memory
        "shared_buffers": pg_bytes(total // 4),
        "effective_cache_size": pg_bytes(total * 3 // 4),
        "maintenance_work_mem": pg_bytes(maintenance),
        "work_mem": pg_bytes(max(work_mem, _MIN_WORK_MEM)),
        # parallelism
        "timescaledb.max_background_workers": str(_MAX_BACKGROUND_WORKERS),
        "max_worker_processes": str(_MIN_BUILTIN_PROCESSES + _MAX_BACKGROUND_WORKERS + tune.cpus),
        "max_parallel_workers": str(tune.cpus),
        "max_parallel_workers_per_gather": str(max(_round_half_up(tune.cpus / 2.0), 1)),
        # WAL
        "wal_buffers": pg_bytes(wal_buffers),
        "min_wal_size": pg_bytes(_DEFAULT_MAX_WAL // 2),
        "max_wal_size": pg_bytes(_DEFAULT_MAX_WAL),
        # miscellaneous
        "default_statistics_target": "500",
        "random_page_cost": "1.1",
        "checkpoint_completion_target": "0.9",
        "max_connections": str(max(tune.max_connections, 10)),
        "max_locks_per_transaction": max_locks,
        "effective_io_concurrency": "200",
    }


def platform_settings(tune: TuningInput) -> dict[str, str]:
    """Settings the platform needs whatever the size: extensions, logging, auth, autovacuum."""
    return {
        "shared_preload_libraries": "timescaledb,pg_stat_statements",
        "pg_stat_statements.track": "top",
        "pg_stat_statements.max": "10000",
        "track_io_timing": "on",
        "timescaledb.telemetry_level": tune.telemetry,
        "password_encryption": "scram-sha-256",
        # logging: slow statements, lock waits, connections, checkpoints
        "log_min_duration_statement": str(tune.log_min_duration_ms),
        "log_lock_waits": "on",
        "log_connections": "on",
        "log_disconnections": "on",
        "log_checkpoints": "on",
        "log_autovacuum_min_duration": "10s",
        "log_temp_files": "10MB",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        # autovacuum tuned for many small chunks: more workers, shorter naps, bigger budget
        "autovacuum_max_workers": str(min(max(3, tune.cpus), 10)),
        "autovacuum_naptime": "10s",
        "autovacuum_vacuum_cost_limit": "2000",
        "autovacuum_vacuum_scale_factor": "0.05",
        "autovacuum_analyze_scale_factor": "0.02",
    }


def server_settings(tune: TuningInput, overrides: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """The complete server settings: tuned, then platform, then the stack's overrides."""
    merged = tuned_settings(tune)
    merged.update(platform_settings(tune))
    merged.update(dict(overrides))
    return dict(sorted(merged.items()))


def server_command(settings: dict[str, str]) -> list[str]:
    """The container command: ``postgres -c name=value ...`` in sorted, stable order."""
    command = ["postgres"]
    for name in sorted(settings):
        command += ["-c", f"{name}={settings[name]}"]
    return command
