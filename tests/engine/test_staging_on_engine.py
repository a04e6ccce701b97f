"""Staging brought up end to end on a real Docker engine with the stand-in images.

One stack for the module (bringing it up takes a while); the tests run in file order: the
bring-up checks, then the no-op `pulumi up`, the crash, the replacement, and last the Prometheus
checks (which wait for the slowest scrape interval, so they come after the rest).
Grafana's container is not created: no Grafana image exists on this machine (see the driver).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import pytest

import ms5_dockerenv
from driver import CONTAINER, EngineRehearsal, container_diff, engine_config
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from rehearsal import MIGRATION_SET, RehearsalRun

pytestmark = pytest.mark.engine

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Poll ``probe`` until it returns a value; fail naming ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 (kept and reported)
            last = exc
        else:
            if value is not None:
                return value
        time.sleep(1)
    pytest.fail(f"{what} not reached within {timeout:.0f} s (last: {last!r})")


@dataclass
class Staging:
    rehearsal: EngineRehearsal
    first: RehearsalRun
    api: ms5_dockerenv.DockerApi
    prefix: str

    @property
    def exports(self) -> dict[str, Any]:
        return self.first.program.exports

    @property
    def dsn(self) -> str:
        return str(self.exports["dbDsn"])

    def container(self, suffix: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("GET", f"/containers/{self.prefix}-{suffix}/json")
        return result

    def health(self, suffix: str) -> str:
        return str(((self.container(suffix).get("State") or {}).get("Health") or {}).get("Status"))


@pytest.fixture(scope="module")
def staging(
    engine: ms5_dockerenv.Engine, new_stack_name: Callable[[str], str]
) -> Iterator[Staging]:
    name = new_stack_name("stg")
    config = {
        **engine_config(engine),
        # The post-deploy checks have their own engine test (test_verification_on_engine.py,
        # with a stand-in of Grafana's API on the Grafana port).
        "ms5:verificationEnabled": False,
        "ms5:benchmarkEnabled": False,
    }
    rehearsal = EngineRehearsal("staging", config, api=engine.api(), stack_name=name)
    first = rehearsal.up()
    yield Staging(rehearsal, first, engine.api(), f"ms5-{name}")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# ---- bring-up ------------------------------------------------------------------------------------


def test_every_container_but_grafana_is_created_on_the_engine(staging: Staging) -> None:
    created = set(staging.rehearsal.log.created)
    for name in (
        "timescaledb-container",
        "monitoring-exporter-container",
        "monitoring-prometheus-container",
        "monitoring-prometheus-pushgateway",
    ):
        assert name in created
        suffix = {
            "timescaledb-container": "timescaledb",
            "monitoring-exporter-container": "postgres-exporter",
            "monitoring-prometheus-container": "prometheus",
            "monitoring-prometheus-pushgateway": "pushgateway",
        }[name]
        info = staging.container(suffix)
        assert info["State"]["Running"], f"{suffix} not running"
        image = staging.api.request("GET", f"/images/{info['Image']}/json")
        assert image["Config"]["Labels"][ms5_dockerenv.STAND_IN_LABEL] == "true"
    assert set(staging.rehearsal.log.skipped) == {
        "monitoring-grafana-data",
        "monitoring-grafana-image",
        "monitoring-grafana-container",
    }


def test_database_is_healthy_and_the_host_logs_in_with_the_programs_password(
    staging: Staging,
) -> None:
    assert staging.health("timescaledb") == "healthy"
    ports = staging.container("timescaledb")["NetworkSettings"]["Ports"]["5432/tcp"]
    assert [(p["HostIp"], int(p["HostPort"])) for p in ports] == [
        ("127.0.0.1", int(staging.exports["dbPort"]))
    ]
    with psycopg.connect(staging.dsn, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), "
            "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
            "current_setting('server_encoding')"
        ).fetchone()
    assert row == ("postgres", "ms5", "2.19.3", "UTF8")


def test_migrations_are_applied(staging: Staging) -> None:
    expected = [m.version for m in load_directory(repository_migrations_dir())]
    assert staging.first.one(MIGRATION_SET).op == "create"
    with psycopg.connect(staging.dsn) as conn:
        applied = [
            r[0]
            for r in conn.execute(
                "SELECT version FROM ms5_meta.schema_history ORDER BY version"
            ).fetchall()
        ]
    assert applied == sorted(expected)


def _exporter_sessions(dsn: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT usename, host(client_addr) FROM pg_stat_activity WHERE usename = 'ms5_exporter'"
        ).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


def test_exporter_reaches_the_database_over_the_stack_network_as_its_own_role(
    staging: Staging,
) -> None:
    sessions = wait_for(
        "an ms5_exporter session", lambda: _exporter_sessions(staging.dsn) or None, 120
    )
    network = staging.container("postgres-exporter")["NetworkSettings"]["Networks"]
    assert list(network) == [f"{staging.prefix}-net"]
    exporter_ip = network[f"{staging.prefix}-net"]["IPAddress"]
    assert {addr for _, addr in sessions} == {exporter_ip}
    with psycopg.connect(staging.dsn) as conn:
        row = conn.execute(
            "SELECT rolsuper, pg_has_role('ms5_exporter', 'pg_monitor', 'member') "
            "FROM pg_roles WHERE rolname = 'ms5_exporter'"
        ).fetchone()
    assert row == (False, True)


def test_pushgateway_accepts_a_push(staging: Staging) -> None:
    url = str(staging.exports["pushgatewayUrl"])
    body = b"# TYPE ms5_engine_probe gauge\nms5_engine_probe 42\n"
    request = urllib.request.Request(f"{url}/metrics/job/ms5_engine_test", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 202)
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'ms5_engine_probe{instance="",job="ms5_engine_test"} 42' in text


# ---- no-op up ------------------------------------------------------------------------------------


def test_noop_up_reads_every_container_back_equal_to_the_program_inputs(staging: Staging) -> None:
    rehearsal = staging.rehearsal
    second = rehearsal.up()
    containers = [r for r in second.results if r.type == CONTAINER]
    assert containers, "no container in the second up"
    differences = {
        name: [(d.key, d.input, d.state) for d in diffs]
        for name, diffs in rehearsal.log.diffs.items()
        if diffs
    }
    assert differences == {}
    assert sorted(r.name for r in containers if r.op != "same") == []
    assert [r.name for r in second.results if r.op in ("create", "update", "delete")] == []
    # The read-back form equals the inputs field by field, ignoring nothing (not even the
    # program's ignoreChanges: uploads are kept from the inputs by the provider's read, and this
    # daemon merges no log options of its own).
    for urn, entry in rehearsal.state.resources.items():
        if entry.type == CONTAINER:
            state = rehearsal.driver.read_container(entry.id, entry.inputs)
            assert container_diff(entry.inputs, state) == [], urn


# ---- crash ---------------------------------------------------------------------------------------


def _count(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM ms5.machine_metrics").fetchone()
        chunks = conn.execute("SELECT count(*) FROM show_chunks('ms5.machine_metrics')").fetchone()
    assert rows is not None
    assert chunks is not None
    return int(rows[0]), int(chunks[0])


def _insert_day(dsn: str, day: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO ms5.machine_metrics (time, machine_id, metric, value) "
            "SELECT t, 'm' || (i %% 3), 'temperature', i FROM generate_series("
            "%s::timestamptz, %s::timestamptz + interval '23 hours 59 minutes', "
            "interval '1 minute') WITH ORDINALITY AS g(t, i)",
            (day, day),
        )


def test_kill_9_of_the_server_is_restarted_by_the_restart_policy_and_loses_nothing(
    staging: Staging,
) -> None:
    _insert_day(staging.dsn, "2026-01-01")
    before = _count(staging.dsn)
    assert before[0] >= 1440
    info = staging.container("timescaledb")
    restarts = int(info["RestartCount"])
    os.kill(int(info["State"]["Pid"]), signal.SIGKILL)  # the postmaster (PID 1 of the container)
    wait_for(
        "a restart",
        lambda: True if int(staging.container("timescaledb")["RestartCount"]) > restarts else None,
        60,
    )
    wait_for(
        "healthy again",
        lambda: True if staging.health("timescaledb") == "healthy" else None,
        120,
    )
    assert _count(staging.dsn) == before


# ---- replace -------------------------------------------------------------------------------------


def test_a_replacement_keeps_every_row_and_chunk_and_the_exporter_recovers(
    staging: Staging,
) -> None:
    _insert_day(staging.dsn, "2026-01-02")
    before = _count(staging.dsn)
    old_id = staging.container("timescaledb")["Id"]
    rehearsal = staging.rehearsal
    # A server setting changes the container's command: ForceNew, replaced delete-before-replace.
    rehearsal.up({"ms5:dbServerSettings": ["work_mem=8MB"]})
    assert "timescaledb-container" in rehearsal.log.replaced
    new = staging.container("timescaledb")
    assert new["Id"] != old_id
    assert staging.health("timescaledb") == "healthy"
    mounts = {m["Destination"]: m["Name"] for m in new["Mounts"] if m["Type"] == "volume"}
    assert mounts["/var/lib/postgresql/data"] == f"{staging.prefix}-pgdata"
    logs = staging.api.request(
        "GET", f"/containers/{new['Id']}/logs", query={"stdout": "1", "stderr": "1"}
    )
    assert "Skipping initialization" in str(logs)
    assert _count(staging.dsn) == before
    with psycopg.connect(staging.dsn) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
    # The exporter reconnects to the new server on its own.
    wait_for(
        "the exporter's session on the new server",
        lambda: _exporter_sessions(staging.dsn) or None,
        120,
    )


# ---- Prometheus (last: waits for the slowest scrape interval) -----------------------------------


def test_prometheus_has_every_target_up_and_every_rule_healthy(staging: Staging) -> None:
    url = str(staging.exports["prometheusUrl"])

    def all_up() -> list[dict[str, Any]] | None:
        targets = _get(f"{url}/api/v1/targets")["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            return list(targets)
        return None

    targets = wait_for("every Prometheus target up", all_up, 420)
    jobs = {t["labels"]["job"] for t in targets}
    assert len(jobs) >= 5, jobs

    def all_ok() -> list[dict[str, Any]] | None:
        groups = _get(f"{url}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r["health"] == "ok" for r in rules):
            return rules
        return None

    rules = wait_for("every rule evaluated and healthy", all_ok, 300)
    assert rules
    result = _get(f"{url}/api/v1/query?query=pg_exporter_last_scrape_error")["data"]["result"]
    assert result
    assert {r["value"][1] for r in result} == {"0"}
    up = _get(f"{url}/api/v1/query?query=pg_up")["data"]["result"]
    assert {r["value"][1] for r in up} == {"1"}
