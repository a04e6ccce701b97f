"""The tuning formulas, checked against values timescaledb-tune gives for the same limits."""

from __future__ import annotations

import pytest

from ms5_components.database.tuning import (
    GB,
    MB,
    TuningInput,
    pg_bytes,
    server_command,
    server_settings,
    tuned_settings,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (100, "1kB"),
        (1536, "2kB"),
        (2 * GB, "2GB"),
        (int(1.5 * GB), "1536MB"),
        (5 * MB + 512 * 1024, "5632kB"),
        (6 * GB, "6GB"),
        (2047 * MB, "2047MB"),
    ],
)
def test_pg_bytes_matches_timescaledb_tune(value, expected):
    assert pg_bytes(value) == expected


def test_staging_size():
    s = tuned_settings(TuningInput(memory_mb=2048, cpus=2, max_connections=100))
    assert s["shared_buffers"] == "512MB"
    assert s["effective_cache_size"] == "1536MB"
    assert s["maintenance_work_mem"] == "256MB"
    # 2 GiB * (128 MiB / 100 conns) / round(2/2) = 2.56 MiB
    assert s["work_mem"] == "2621kB"
    assert s["max_worker_processes"] == "13"  # 3 built-in + 8 TimescaleDB + 2 CPUs
    assert s["max_parallel_workers"] == "2"
    assert s["max_parallel_workers_per_gather"] == "1"
    assert s["timescaledb.max_background_workers"] == "8"
    assert s["wal_buffers"] == "16MB"
    assert s["max_wal_size"] == "1GB" and s["min_wal_size"] == "512MB"
    assert s["max_locks_per_transaction"] == "64"


def test_production_size():
    s = tuned_settings(TuningInput(memory_mb=8192, cpus=4, max_connections=200))
    assert s["shared_buffers"] == "2GB"
    assert s["effective_cache_size"] == "6GB"
    assert s["maintenance_work_mem"] == "1GB"
    # 8 GiB * (128 MiB / 200) / round(4/2) = 2.56 MiB
    assert s["work_mem"] == "2621kB"
    assert s["max_worker_processes"] == "15"
    assert s["max_parallel_workers_per_gather"] == "2"
    assert s["max_locks_per_transaction"] == "128"
    assert s["max_connections"] == "200"


def test_small_memory_wal_buffers_and_maintenance_cap():
    assert (
        tuned_settings(TuningInput(memory_mb=1024, cpus=1, max_connections=50))["wal_buffers"]
        == "7864kB"
    )
    big = tuned_settings(TuningInput(memory_mb=65536, cpus=16, max_connections=100))
    assert big["maintenance_work_mem"] == "2047MB"
    assert big["max_locks_per_transaction"] == "512"


def test_overrides_win_and_command_is_sorted():
    s = server_settings(
        TuningInput(memory_mb=2048, cpus=2, max_connections=100), [("work_mem", "64MB")]
    )
    assert s["work_mem"] == "64MB"
    assert list(s) == sorted(s)
    cmd = server_command(s)
    assert cmd[0] == "postgres" and cmd[1] == "-c"
    assert "work_mem=64MB" in cmd
