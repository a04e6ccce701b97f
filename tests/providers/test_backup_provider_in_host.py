"""Backup and RestoreDrill run as the engine runs them: the serialized providers taken from the
program, loaded by ``python -I -m pulumi.dynamic`` in a clean directory, called over gRPC, against
the real test server (the chroot executor stands in for ``docker exec``)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

import ms5_testenv
from harness import run_program, unwrap
from rehearsal import RehearsalError, provider_host
from stacks import overrides_for

pytestmark = pytest.mark.integration

BACKUP_URN = "urn:pulumi:production::ms5::pulumi-python:dynamic/ms5:Backup::backup"
DRILL_URN = "urn:pulumi:production::ms5::pulumi-python:dynamic/ms5:RestoreDrill::restore-drill"
DIFF_NONE, DIFF_SOME = 1, 2


def _program_inputs(type_suffix: str) -> dict[str, Any]:
    run = run_program("production", overrides_for("production"))
    [reg] = [r for r in run.registrations.values() if r.type.endswith(type_suffix)]
    inputs = unwrap(reg.inputs)
    assert isinstance(inputs["__provider"], str) and inputs["__provider"]
    return inputs


def _pointed_at_the_test_server(
    inputs: dict[str, Any], dsn: str, testenv: Any, backup_dir: Path, pushgateway: str
) -> dict[str, Any]:
    params = conninfo_to_dict(dsn)
    return {
        **inputs,
        "database": params["dbname"],
        "executor": {"kind": "chroot", "root": str(testenv.root)},
        "backupDir": testenv.in_root(backup_dir),
        "connection": {
            "PGHOST": params["host"],
            "PGPORT": str(params["port"]),
            "PGUSER": params["user"],
            "bindir": ms5_testenv.PG_BINDIR,
        },
        "password": params["password"],
        "pushgatewayUrl": pushgateway,
    }


def _pushed(pushgateway: str) -> str:
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
        return response.read().decode()


def test_backup_and_drill_from_the_program_in_a_clean_host(
    ms5_database: str, testenv: Any, backup_dir: Path, pushgateway_url: str
) -> None:
    news = _pointed_at_the_test_server(
        _program_inputs(":Backup"), ms5_database, testenv, backup_dir, pushgateway_url
    )
    news["keepCount"] = 1
    password = news["password"]
    with provider_host() as host:
        # Preview of the first deploy: the reason is shown, nothing runs.
        checked, failures = host.check(BACKUP_URN, {}, news)
        assert failures == []
        assert checked["plannedBackup"] == ["first deploy of the Backup resource"]
        assert list(backup_dir.iterdir()) == []
        id_, outs = host.create(BACKUP_URN, checked)
        assert id_ == f"ms5-backup-{news['database']}"
        assert outs["lastResult"] == "published and verified"
        first = outs["lastBackup"]
        assert outs["backups"] == [first]
        assert outs["lastSummary"]["rows"] >= 3500
        assert password not in json.dumps(outs)
        # A deploy with nothing to change takes no backup.
        same, _ = host.check(BACKUP_URN, checked, news)
        assert same["plannedBackup"] == []
        assert host.diff(BACKUP_URN, id_, outs, same).changes == DIFF_NONE
        # A new migration file: the preview says why, the update backs up, retention prunes.
        with_new = {**news, "migrations": {**news["migrations"], "V0099__new.sql": "f" * 64}}
        planned, _ = host.check(BACKUP_URN, same, with_new)
        assert planned["plannedBackup"] == ["migrations pending: V0099__new.sql"]
        assert host.diff(BACKUP_URN, id_, outs, planned).changes == DIFF_SOME
        outs2 = host.update(BACKUP_URN, id_, outs, planned)
        second = outs2["lastBackup"]
        assert second != first and outs2["pruned"] == [first] and outs2["backups"] == [second]
        assert outs2["lastReasons"] == ["migrations pending: V0099__new.sql"]
        text = _pushed(pushgateway_url)
        assert f'ms5_backup_last_run_success{{database="{news["database"]}"' in text

        # The drill of the new backup, from the program's RestoreDrill provider.
        drill_news = {
            **_pointed_at_the_test_server(
                _program_inputs(":RestoreDrill"),
                ms5_database,
                testenv,
                backup_dir,
                pushgateway_url,
            ),
            "backup": second,
        }
        drill_checked, failures = host.check(DRILL_URN, {}, drill_news)
        assert failures == []
        _, drill_outs = host.create(DRILL_URN, drill_checked)
        assert drill_outs["drilled"] == second and drill_outs["rtoSeconds"] > 0
        assert password not in json.dumps(drill_outs)
        assert "ms5_restore_drill_duration_seconds" in _pushed(pushgateway_url)

        # Mandatory: a failing backup fails the update with the reason (the change stops).
        broken = {**planned, "password": "wrong-password-000", "label": "again"}
        with pytest.raises(RehearsalError) as info:
            host.update(BACKUP_URN, id_, outs2, broken)
        assert "password authentication failed" in str(info.value)
        assert "was not made" in str(info.value)
        assert "wrong-password-000" not in str(info.value)
        # Not mandatory (outside production): recorded, the deploy goes on.
        lenient = host.update(BACKUP_URN, id_, outs2, {**broken, "mandatory": False})
        assert lenient["lastResult"] == "failed" and lenient["lastBackup"] == second
        assert sorted(p.name for p in backup_dir.iterdir()) == [second]


def test_the_first_deploy_has_no_server_to_back_up(
    testenv: Any, backup_dir: Path, pg_database: str
) -> None:
    news = _pointed_at_the_test_server(
        _program_inputs(":Backup"), pg_database, testenv, backup_dir, ""
    )
    news["executor"] = {"kind": "chroot", "root": str(backup_dir / "no-server-here")}
    with provider_host() as host:
        checked, _ = host.check(BACKUP_URN, {}, news)
        _, outs = host.create(BACKUP_URN, checked)
    assert outs["lastResult"] == "no server yet (first deploy): nothing to back up"
    assert outs["lastBackup"] == ""
