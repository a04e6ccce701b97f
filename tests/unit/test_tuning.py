"""The server settings, pinned to what they are meant to be.

The tuned values are checked against timescaledb-tune's own expectations (its
``internal/parse`` and ``pkg/pgtune`` test tables, the version with work_mem's 6.4 MB per GiB
per 20 connections that TimescaleDB 2.19 images ship) and against the formulas the README
documents; the platform settings against the table below, which says why each is set; every
threshold and clamp at and past its edge.
"""

from __future__ import annotations

import pytest

from ms5_components.database.tuning import (
    GB,
    KB,
    MB,
    TuningInput,
    pg_bytes,
    platform_settings,
    server_command,
    server_settings,
    tuned_settings,
)
from ms5_components.settings import SPECS_BY_KEY

TB = 1024 * GB


def tune(memory_mb: int = 2048, cpus: int = 2, max_connections: int = 100, **extra: object):
    return tuned_settings(
        TuningInput(memory_mb=memory_mb, cpus=cpus, max_connections=max_connections, **extra)  # type: ignore[arg-type]
    )


# ---- byte formatting: timescaledb-tune's BytesToPGFormat ---------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2000 * TB, "2000TB"),  # no unit above TB
        (TB, "1TB"),
        (int(1.5 * TB), "1536GB"),  # a fraction drops to the next smaller unit
        (TB - GB, "1023GB"),
        (TB - MB, "1048575MB"),
        (GB, "1GB"),
        (int(1.5 * GB), "1536MB"),
        (2 * GB, "2GB"),
        (GB - MB, "1023MB"),
        (2047 * MB, "2047MB"),
        (MB, "1MB"),
        (int(1.5 * MB), "1536kB"),
        (5 * MB + 512 * KB, "5632kB"),
        (MB - 4 * KB, "1020kB"),
        (KB, "1kB"),
        (1536, "2kB"),  # kB values are rounded, half away from zero ...
        (2560, "3kB"),  # ... also where banker's rounding would go down (2.5 -> 2)
        (1400, "1kB"),
        (KB - 24, "1kB"),  # nothing below 1kB
        (100, "1kB"),
        (1, "1kB"),
        (MB + 1, "1MB"),  # a fraction under 0.001 of the unit is dropped ...
        (GB + MB, "1GB"),  # ... (1/1024 is under 0.001) ...
        (MB + 1100, "1025kB"),  # ... one above it is not: 1 MiB + 1100 bytes is 1025.07 kB
        (GB + 2 * MB, "1026MB"),
    ],
)
def test_pg_bytes_matches_timescaledb_tune(value, expected):
    assert pg_bytes(value) == expected


# ---- memory: shared_buffers 25 %, effective_cache_size 75 %, maintenance_work_mem, work_mem ------


@pytest.mark.parametrize(
    ("memory_mb", "shared", "cache", "maintenance", "work_mem"),
    [
        # timescaledb-tune's base values: 1 CPU, 20 connections.
        (10 * 1024, "2560MB", "7680MB", "1280MB", "64MB"),
        (12 * 1024, "3GB", "9GB", "1536MB", "78643kB"),
        (32 * 1024, "8GB", "24GB", "2047MB", "209715kB"),  # maintenance_work_mem capped
        (16 * 1024, "4GB", "12GB", "2047MB", "104857kB"),  # 16 GiB * 128 MiB > the cap
        (15 * 1024, "3840MB", "11520MB", "1920MB", "96MB"),  # just under the cap
    ],
)
def test_memory_settings_match_timescaledb_tune(memory_mb, shared, cache, maintenance, work_mem):
    s = tune(memory_mb=memory_mb, cpus=1, max_connections=20)
    assert (s["shared_buffers"], s["effective_cache_size"]) == (shared, cache)
    assert s["maintenance_work_mem"] == maintenance
    assert s["work_mem"] == work_mem


@pytest.mark.parametrize(
    ("cpus", "max_connections", "work_mem"),
    [
        # 10 GiB: base 64MB, divided by connections/20 and by round(cpus / 2), half away from zero.
        (1, 20, "64MB"),  # round(0.5) = 1, not Python's 0
        (2, 20, "64MB"),
        (3, 20, "32MB"),  # round(1.5) = 2
        (4, 20, "32MB"),
        (5, 20, "21845kB"),  # round(2.5) = 3, not Python's 2
        (1, 50, "26214kB"),
        (5, 50, "8738kB"),
        (1, 10, "128MB"),  # the fewest connections the settings allow
        (1, 1, "1280MB"),  # the formula holds for any positive count
    ],
)
def test_work_mem_per_connection_and_cpu(cpus, max_connections, work_mem):
    assert tune(memory_mb=10 * 1024, cpus=cpus, max_connections=max_connections)["work_mem"] == (
        work_mem
    )


def test_work_mem_never_below_64kb():
    # 512 MiB shared by 10000 connections and 256 CPUs would be a few bytes each.
    assert tune(memory_mb=512, cpus=256, max_connections=10_000)["work_mem"] == "64kB"
    # Either side of the floor: 0.5 GiB * 128 MiB / 1100 = 61008 bytes, / 1000 = 67109 bytes.
    assert tune(memory_mb=512, cpus=1, max_connections=1100)["work_mem"] == "64kB"
    assert tune(memory_mb=512, cpus=1, max_connections=1000)["work_mem"] == "66kB"


def test_no_connections_counts_as_one():
    """A zero count (not accepted by the settings) must not divide by zero."""
    assert tune(memory_mb=1024, cpus=2, max_connections=0)["work_mem"] == "128MB"


# ---- parallelism: max_worker_processes = 3 + 8 TimescaleDB workers + CPUs ----------------------


@pytest.mark.parametrize(
    ("cpus", "per_gather"),
    [(1, "1"), (2, "1"), (3, "2"), (4, "2"), (5, "3"), (8, "4"), (256, "128")],
)
def test_parallel_settings(cpus, per_gather):
    s = tune(cpus=cpus)
    assert s["timescaledb.max_background_workers"] == "8"
    assert s["max_worker_processes"] == str(3 + 8 + cpus)
    assert s["max_parallel_workers"] == str(cpus)
    assert s["max_parallel_workers_per_gather"] == per_gather


# ---- WAL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory_mb", "wal_buffers"),
    [
        (512, "3932kB"),  # under 2 GiB: 7864 kB per GiB of memory
        (1024, "7864kB"),
        (2047, "15720kB"),
        (2048, "16MB"),  # from 2 GiB on: 16MB
        (65536, "16MB"),
    ],
)
def test_wal_settings(memory_mb, wal_buffers):
    s = tune(memory_mb=memory_mb)
    assert s["wal_buffers"] == wal_buffers
    assert (s["min_wal_size"], s["max_wal_size"]) == ("512MB", "1GB")


# ---- miscellaneous ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory_mb", "locks"),
    [
        (512, "64"),
        (8 * 1024 - 1, "64"),
        (8 * 1024, "128"),
        (16 * 1024 - 1, "128"),
        (16 * 1024, "256"),
        (32 * 1024 - 1, "256"),
        (32 * 1024, "512"),
        (4_194_304, "512"),
    ],
)
def test_max_locks_per_transaction_steps_at_8_16_32_gib(memory_mb, locks):
    assert tune(memory_mb=memory_mb)["max_locks_per_transaction"] == locks


@pytest.mark.parametrize(("connections", "expected"), [(10, "10"), (9, "10"), (10_000, "10000")])
def test_max_connections_is_the_setting_with_a_floor_of_10(connections, expected):
    assert tune(max_connections=connections)["max_connections"] == expected


def test_fixed_recommendations():
    s = tune()
    assert s["default_statistics_target"] == "500"
    assert s["random_page_cost"] == "1.1"  # SSD storage
    assert s["checkpoint_completion_target"] == "0.9"
    assert s["effective_io_concurrency"] == "200"


def test_the_two_stack_sizes_in_full():
    """Every tuned key, for the sizes staging and production run (README: dbMemoryMb ...)."""
    assert tune(memory_mb=2048, cpus=2, max_connections=100) == {
        "checkpoint_completion_target": "0.9",
        "default_statistics_target": "500",
        "effective_cache_size": "1536MB",
        "effective_io_concurrency": "200",
        "maintenance_work_mem": "256MB",
        "max_connections": "100",
        "max_locks_per_transaction": "64",
        "max_parallel_workers": "2",
        "max_parallel_workers_per_gather": "1",
        "max_wal_size": "1GB",
        "max_worker_processes": "13",
        "min_wal_size": "512MB",
        "random_page_cost": "1.1",
        "shared_buffers": "512MB",
        "timescaledb.max_background_workers": "8",
        "wal_buffers": "16MB",
        "work_mem": "2621kB",  # 2 GiB * 6.4 MiB * 20 / 100 / round(2 / 2)
    }
    production = tune(memory_mb=8192, cpus=4, max_connections=200)
    assert production["shared_buffers"] == "2GB"
    assert production["effective_cache_size"] == "6GB"
    assert production["maintenance_work_mem"] == "1GB"
    assert production["work_mem"] == "2621kB"  # 8 GiB * 128 MiB / 200 / round(4 / 2)
    assert production["max_worker_processes"] == "15"
    assert production["max_locks_per_transaction"] == "128"


# ---- platform settings -------------------------------------------------------------------------

PLATFORM = {
    # TimescaleDB itself, and per-statement statistics for the slow-query panels.
    "shared_preload_libraries": "timescaledb,pg_stat_statements",
    "pg_stat_statements.track": "top",
    "pg_stat_statements.max": "10000",
    "track_io_timing": "on",
    # Passwords are stored as SCRAM verifiers, never md5 (the container's pg_hba says scram too).
    "password_encryption": "scram-sha-256",
    # Logging: slow statements (ms5:dbLogMinDurationMs), lock waits, connections, checkpoints,
    # slow autovacuum runs and big temporary files, with time, pid, user and database.
    "log_min_duration_statement": "500",
    "log_lock_waits": "on",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_checkpoints": "on",
    "log_autovacuum_min_duration": "10s",
    "log_temp_files": "10MB",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    # Autovacuum for many small chunks: more workers than the default 3, a 10 s nap instead of
    # 1 min, ten times the default cost budget (200), and thresholds at 5 % / 2 % of a table
    # instead of 20 % / 10 %.
    "autovacuum_max_workers": "3",
    "autovacuum_naptime": "10s",
    "autovacuum_vacuum_cost_limit": "2000",
    "autovacuum_vacuum_scale_factor": "0.05",
    "autovacuum_analyze_scale_factor": "0.02",
    # ms5:dbTelemetry
    "timescaledb.telemetry_level": "off",
}


def test_platform_settings_are_the_documented_ones():
    assert platform_settings(TuningInput(memory_mb=2048, cpus=2, max_connections=100)) == PLATFORM


def test_platform_defaults_are_the_settings_defaults():
    """TuningInput's defaults are ms5:dbLogMinDurationMs's and ms5:dbTelemetry's."""
    bare = TuningInput(memory_mb=2048, cpus=2, max_connections=100)
    assert bare.log_min_duration_ms == SPECS_BY_KEY["dbLogMinDurationMs"].default == 500
    assert bare.telemetry == SPECS_BY_KEY["dbTelemetry"].default == "off"


@pytest.mark.parametrize("duration", [-1, 0, 1, 500, 86_400_000])
def test_log_min_duration_is_passed_through(duration):
    """-1 turns slow-statement logging off, 0 logs every statement (README settings reference)."""
    s = platform_settings(
        TuningInput(memory_mb=2048, cpus=2, max_connections=100, log_min_duration_ms=duration)
    )
    assert s["log_min_duration_statement"] == str(duration)


@pytest.mark.parametrize("telemetry", ["off", "basic"])
def test_telemetry_level_is_passed_through(telemetry):
    s = platform_settings(
        TuningInput(memory_mb=2048, cpus=2, max_connections=100, telemetry=telemetry)
    )
    assert s["timescaledb.telemetry_level"] == telemetry


@pytest.mark.parametrize(
    ("cpus", "workers"), [(1, "3"), (2, "3"), (3, "3"), (4, "4"), (9, "9"), (10, "10"), (11, "10")]
)
def test_autovacuum_workers_follow_cpus_between_3_and_10(cpus, workers):
    s = platform_settings(TuningInput(memory_mb=2048, cpus=cpus, max_connections=100))
    assert s["autovacuum_max_workers"] == workers


# ---- merging and the command line ------------------------------------------------------------


def test_server_settings_merge_tuned_platform_and_overrides_sorted():
    base = TuningInput(memory_mb=2048, cpus=2, max_connections=100)
    merged = server_settings(base)
    assert merged == {**tuned_settings(base), **PLATFORM}
    assert list(merged) == sorted(merged)
    overridden = server_settings(
        base, [("work_mem", "64MB"), ("log_min_duration_statement", "-1"), ("jit", "off")]
    )
    assert overridden["work_mem"] == "64MB"  # over a tuned value
    assert overridden["log_min_duration_statement"] == "-1"  # over a platform value
    assert overridden["jit"] == "off"  # a new one
    assert list(overridden) == sorted(overridden)
    assert len(overridden) == len(merged) + 1


def test_server_command_is_postgres_with_sorted_c_options():
    assert server_command({"work_mem": "64MB", "jit": "off", "a.b": "x=y"}) == [
        "postgres",
        "-c",
        "a.b=x=y",
        "-c",
        "jit=off",
        "-c",
        "work_mem=64MB",
    ]
    assert server_command({}) == ["postgres"]
