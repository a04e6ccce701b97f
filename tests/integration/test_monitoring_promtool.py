"""The generated Prometheus configuration, rules and rule unit tests, checked by the real promtool.

Every alert has promtool unit tests (``AlertCase``s) showing it fires when it should and stays
quiet otherwise; a mutation run proves those tests can fail (each expectation inverted makes its
test fail).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import ms5_testenv
from ms5_components.monitoring import rules
from ms5_components.monitoring.config import FileInputs, GeneratedFiles, generate_files

pytestmark = pytest.mark.integration


def _files(alerts: rules.AlertSettings | None = None) -> GeneratedFiles:
    return generate_files(
        FileInputs(
            timescaledb_version=(2, 19, 3),
            database="ms5",
            db_host="ms5-staging-timescaledb",
            exporter_host="ms5-staging-postgres-exporter",
            prometheus_host="ms5-staging-prometheus",
            pushgateway_host="ms5-staging-pushgateway",
            stack="staging",
            alerts=alerts or rules.AlertSettings(),
        )
    )


def _write(directory: Path, files: GeneratedFiles) -> tuple[Path, Path, list[Path]]:
    config = directory / "prometheus.yml"
    rules_file = directory / "ms5-alerts.yml"
    # The deployed config names the rule file by its container path; point it at the copy.
    config.write_text(
        files.prometheus_config.replace("/etc/prometheus/rules/ms5-alerts.yml", str(rules_file))
    )
    rules_file.write_text(files.prometheus_rules)
    tests_files = []
    for name, text in files.prometheus_rule_tests.items():
        (directory / name).write_text(text)
        tests_files.append(directory / name)
    return config, rules_file, tests_files


def _ok(result: object) -> str:
    out = getattr(result, "stdout", "") + getattr(result, "stderr", "")
    assert getattr(result, "returncode", 1) == 0, out
    return out


def test_promtool_check_config(testenv: ms5_testenv.ServiceEnv, tmp_path: Path) -> None:
    config, rules_file, _ = _write(tmp_path, _files())
    out = _ok(testenv.promtool("check", "config", str(config), files=[config, rules_file]))
    assert "SUCCESS" in out


def test_promtool_check_rules(testenv: ms5_testenv.ServiceEnv, tmp_path: Path) -> None:
    _, rules_file, _ = _write(tmp_path, _files())
    out = _ok(testenv.promtool("check", "rules", str(rules_file), files=[rules_file]))
    alerts = rules.alert_rules(rules.AlertSettings())
    expected = len(rules.RECORDING_RULES) + sum(len(a.tiers) for a in alerts)
    assert f"SUCCESS: {expected} rules found" in out


@pytest.mark.parametrize(
    "alerts",
    [
        rules.AlertSettings(),
        rules.AlertSettings(
            backup_max_age_hours=6, restore_drill_max_age_hours=48, storage_budget_bytes=10**12
        ),
    ],
    ids=["defaults", "other-thresholds"],
)
def test_promtool_rule_unit_tests_pass(
    testenv: ms5_testenv.ServiceEnv, tmp_path: Path, alerts: rules.AlertSettings
) -> None:
    _, rules_file, tests_files = _write(tmp_path, _files(alerts))
    out = _ok(
        testenv.promtool("test", "rules", *map(str, tests_files), files=[*tests_files, rules_file])
    )
    assert out.count("SUCCESS") == len(tests_files)
    tested = {
        t["alert_rule_test"][0]["alertname"]
        for f in tests_files
        for t in yaml.safe_load(f.read_text())["tests"]
    }
    assert tested == {a.name for a in rules.alert_rules(alerts)}


def test_every_alert_fires_and_stays_quiet_in_its_tests() -> None:
    for alert in rules.alert_rules(rules.AlertSettings()):
        fired = {s for case in alert.cases for s in case.firing}
        assert fired == {t.severity for t in alert.tiers}, alert.name
        assert any(not case.firing for case in alert.cases), alert.name


def test_inverted_expectations_make_every_rule_test_fail(
    testenv: ms5_testenv.ServiceEnv, tmp_path: Path
) -> None:
    """Mutation check: the unit tests are not vacuous (every one fails when inverted)."""
    _, rules_file, _ = _write(tmp_path, _files())
    mutated: list[Path] = []
    names: set[str] = set()
    for step, file_name in rules.RULE_TEST_FILES.items():
        document = rules.rule_tests_document(
            rules.AlertSettings(), rules_file.name, step_minutes=step
        )
        tests = document["tests"]
        assert isinstance(tests, list) and tests
        for test in tests:
            names.add(test["name"])
            for check in test["alert_rule_test"]:
                if check["exp_alerts"]:
                    check["exp_alerts"] = check["exp_alerts"][:-1]  # one firing tier "missing"
                else:
                    check["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
        path = tmp_path / f"mutated-{file_name}"
        path.write_text(yaml.safe_dump(document, sort_keys=True))
        mutated.append(path)
    result = testenv.promtool("test", "rules", *map(str, mutated), files=[*mutated, rules_file])
    out = result.stdout + result.stderr
    assert result.returncode != 0
    failed = {
        line.strip().split("name: ", 1)[1].rstrip(",")
        for line in out.splitlines()
        if line.strip().startswith("name: ")
    }
    assert failed == names
