"""Tests of the real-services tooling itself (tools/ms5_testenv.py and tests/conftest.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

import ms5_testenv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
StartPostgres = Callable[..., ms5_testenv.PostgresServer]


def test_pg_server_describes_itself(pg_server: ms5_testenv.PostgresServer) -> None:
    assert pg_server.server_version.startswith("17")
    assert pg_server.server_version_num >= 170000
    assert pg_server.timescaledb_version
    assert pg_server.license in {"apache", "timescale"}
    with psycopg.connect(pg_server.dsn) as conn:
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
    assert row is not None
    assert "timescaledb" in str(row[0])


def test_timescaledb_extension_in_fresh_database(pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        installed = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert installed == (0,), "pg_database must not pre-create the extension"
        conn.execute("CREATE EXTENSION timescaledb")
        available = conn.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions"
            " WHERE name = 'timescaledb'"
        ).fetchone()
        extversion = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        conn.execute("CREATE TABLE metrics (ts timestamptz NOT NULL, value double precision)")
        conn.execute("SELECT create_hypertable('metrics', 'ts')")
    assert available is not None
    assert extversion is not None
    assert available[1] == extversion[0] == available[0]


def test_pg_database_is_unique_and_dropped(
    pg_server: ms5_testenv.PostgresServer, pg_database: str
) -> None:
    name = psycopg.conninfo.conninfo_to_dict(pg_database)["dbname"]
    with psycopg.connect(pg_server.dsn) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert name in names
    if pg_server.managed:  # a shared external server may have other sessions' databases
        assert [n for n in names if str(n).startswith("ms5_test_")] == [name]


def test_start_postgres_with_settings(start_postgres: StartPostgres) -> None:
    server = start_postgres({"shared_buffers": "256MB", "work_mem": "8MB", "jit": False})
    with psycopg.connect(server.dsn) as conn:
        shown = [
            conn.execute(f"SHOW {name}").fetchone()
            for name in ("shared_buffers", "work_mem", "jit")
        ]
    assert shown == [("256MB",), ("8MB",), ("off",)]
    assert server.settings["shared_buffers"] == "256MB"


def test_start_postgres_bad_setting_fails_with_postgres_message(
    start_postgres: StartPostgres,
) -> None:
    with pytest.raises(ms5_testenv.ServiceStartError) as excinfo:
        start_postgres({"shared_buffers": "12XB"})
    message = str(excinfo.value)
    assert 'invalid value for parameter "shared_buffers": "12XB"' in message
    assert "PostgreSQL" in message


def test_root_psql_is_the_servers_major(
    testenv: ms5_testenv.ServiceEnv, pg_server: ms5_testenv.PostgresServer
) -> None:
    result = testenv.psql(pg_server.dsn, "SELECT current_setting('server_version_num');")
    assert result.stdout.strip().startswith("17")
    version = testenv.pg_tool("pg_dump", ["--version"]).stdout
    assert "17." in version


def test_pushgateway_accepts_and_serves_metrics(pushgateway_url: str) -> None:
    with urllib.request.urlopen(f"{pushgateway_url}/-/ready", timeout=5) as response:
        assert response.status == 200
    push = urllib.request.Request(
        f"{pushgateway_url}/metrics/job/ms5_testenv_selftest",
        data=b"ms5_testenv_selftest_value 42\n",
        method="PUT",
    )
    with urllib.request.urlopen(push, timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{pushgateway_url}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert "ms5_testenv_selftest_value" in body


def test_promtool_runs(testenv: ms5_testenv.ServiceEnv) -> None:
    result = testenv.promtool("--version")
    assert result.returncode == 0, result.stderr
    assert "promtool, version" in result.stdout + result.stderr


def test_promtool_checks_staged_config_and_rules(
    testenv: ms5_testenv.ServiceEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n"
        "  - name: selftest\n"
        "    rules:\n"
        "      - alert: SelfTest\n"
        "        expr: up == 0\n"
        "        for: 1m\n"
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 15s\nrule_files:\n  - {rules}\n")
    result = testenv.promtool("check", "config", str(config), files=[config, rules])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: up ==\n")
    result = testenv.promtool("check", "rules", str(bad), files=[bad])
    assert result.returncode != 0


def test_exporter_and_prometheus_start(
    testenv: ms5_testenv.ServiceEnv, pg_server: ms5_testenv.PostgresServer, tmp_path: Path
) -> None:
    exporter = testenv.start_postgres_exporter(
        f"{pg_server.dsn}?sslmode=disable", extra_args=["--no-collector.stat_bgwriter"]
    )
    try:
        with urllib.request.urlopen(f"{exporter.url}/metrics", timeout=10) as response:
            assert "pg_up 1" in response.read().decode()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: postgres\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n"
        )
        prometheus = testenv.start_prometheus(config)
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=5) as response:
                assert response.status == 200
        finally:
            testenv.stop(prometheus)
    finally:
        testenv.stop(exporter)
    assert exporter.process is not None
    assert not exporter.process.alive()


@pytest.mark.full_license
def test_full_license_marker_runs_only_on_timescale_license(
    pg_server: ms5_testenv.PostgresServer,
) -> None:
    assert pg_server.license == "timescale"


def test_cli_start_env_status_stop(tmp_path: Path) -> None:
    env = {**os.environ, ms5_testenv.ENV_STATE: str(tmp_path / "state.json")}
    cli = [sys.executable, str(REPO / "tools" / "ms5_testenv.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    started = run("start")
    try:
        assert started.returncode == 0, started.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in started.stdout.splitlines()
            if line.startswith("export ")
        )
        dsn = shlex.split(exports[ms5_testenv.ENV_PG_DSN])[0]
        assert exports[ms5_testenv.ENV_PUSHGATEWAY_URL]
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert run("env").stdout == started.stdout
        assert "running" in run("status").stdout
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "state.json").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()
