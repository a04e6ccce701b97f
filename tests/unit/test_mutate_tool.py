"""`./ms5 mutate` (tools/mutate.py): its configuration, the work directory it lays out for mutmut,
and how it scores. The mutation run itself is not part of the test suite (minutes per module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import mutate
from harness import ROOT


def test_every_configured_module_and_its_tests_exist():
    pytest_options, mutmut_options, modules, target = mutate.load_config()
    assert target == 90
    assert [m.name for m in modules] == [
        "settings",
        "plan",
        "tuning",
        "policy-containers",
        "policy-lifecycle",
        "policy-stack",
    ]
    for module in modules:
        assert (ROOT / module.source).is_file(), module.source
        assert module.source.parts[:3] == ("components", "src", "ms5_components") or (
            module.source.parts[:2] == ("policy", "ms5_policy")
            and all(t.parts[:2] == ("tests", "policy") for t in module.tests)
            and Path("tests/policy/test_pack.py") not in module.tests
        )
        assert module.tests, f"{module.name} has no tests"
        for test in module.tests:
            assert (ROOT / test).is_file(), test
    assert (
        pytest_options
        == tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    )
    assert mutmut_options["pytest_add_cli_args"][-2:] == ["-p", "mutate_select"]


def test_the_work_directory_is_a_project_mutmut_understands(tmp_path, monkeypatch):
    monkeypatch.setattr(mutate, "WORK", tmp_path)
    pytest_options, mutmut_options, modules, _ = mutate.load_config()
    plan = next(m for m in modules if m.name == "plan")
    work = mutate.prepare(plan, pytest_options, mutmut_options)
    assert work == tmp_path / "plan"
    assert (work / "src").resolve() == ROOT / "components" / "src"
    for name in ("tests", "infra", "tools", "migrations", "Pulumi.yaml", "Pulumi.staging.yaml"):
        assert (work / name).resolve() == ROOT / name, name
    # the package resolves the repository's migrations from the mutated copy's place
    assert (work / "src" / "ms5_components" / "migrations" / "plan.py").is_file()
    config = tomllib.loads((work / "pyproject.toml").read_text())["tool"]
    assert config["pytest"]["ini_options"] == pytest_options
    assert config["mutmut"]["source_paths"] == ["src"]
    assert config["mutmut"]["only_mutate"] == ["src/ms5_components/migrations/plan.py"]
    selection = config["mutmut"]["pytest_add_cli_args_test_selection"]
    assert "tests/unit/test_migration_plan.py" in selection
    assert all(t.startswith("tests/unit/test_migration_plan") for t in selection)
    assert (work / "mutate_select.py").resolve() == ROOT / "tools" / "mutate_select.py"
    assert "mutate_select.py" in config["mutmut"]["also_copy"]
    assert "tests" in config["mutmut"]["also_copy"] and "src" not in config["mutmut"]["also_copy"]
    # laying it out again replaces the links instead of failing
    assert mutate.prepare(plan, pytest_options, mutmut_options) == work


def test_a_policy_module_gets_the_policy_directory_as_src(tmp_path, monkeypatch):
    monkeypatch.setattr(mutate, "WORK", tmp_path)
    pytest_options, mutmut_options, modules, _ = mutate.load_config()
    rules = next(m for m in modules if m.name == "policy-stack")
    work = mutate.prepare(rules, pytest_options, mutmut_options)
    assert (work / "src").resolve() == ROOT / "policy"
    assert (work / "src" / "ms5_policy" / "stack.py").is_file()
    config = tomllib.loads((work / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert config["only_mutate"] == ["src/ms5_policy/stack.py"]
    assert "tests/policy/test_rules.py" in config["pytest_add_cli_args_test_selection"]
    assert rules.inside_src.with_suffix(".py.meta") == Path("src/ms5_policy/stack.py.meta")


def test_a_source_outside_the_package_roots_is_refused():
    module = mutate.Module(name="x", source=Path("tools/mutate.py"), tests=())
    with pytest.raises(ValueError, match=r"tools/mutate\.py is not under components/src or policy"):
        _ = module.package_root


def test_score_counts_killed_and_timed_out_mutants(tmp_path):
    module = mutate.Module(
        name="tuning",
        source=Path("components/src/ms5_components/database/tuning.py"),
        tests=(Path("tests/unit/test_tuning.py"),),
    )
    meta = tmp_path / "mutants" / "src" / "ms5_components" / "database" / "tuning.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"a__mutmut_1": 1, "a__mutmut_2": 0, "a__mutmut_3": 36, "a__mutmut_4": 33}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    score = mutate.read_score(module, tmp_path)
    assert (score.total, score.killed, score.timeouts) == (4, 2, 1)
    assert score.percent == 50.0
    assert score.not_killed() == [("a__mutmut_2", "survived"), ("a__mutmut_4", "no tests")]


def test_an_empty_run_scores_zero():
    assert mutate.Score(module="x", statuses={}).percent == 0.0


def test_unknown_module_is_refused(capsys):
    with pytest.raises(SystemExit) as caught:
        mutate.main(["nonsense"])
    assert caught.value.code == 2
    assert (
        "unknown module(s) nonsense; known: settings, plan, tuning, policy-containers,"
        in capsys.readouterr().err
    )


def test_ms5_lists_the_command():
    done = subprocess.run([str(ROOT / "ms5")], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "./ms5 mutate [MODULE...]" in done.stdout


def test_the_plugin_leaves_out_tests_of_the_whole_program():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "mutate_select",
            "tests/unit/test_settings.py",
            "tests/unit/test_migration_plan.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tools")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected, done.stdout
    assert not [line for line in collected if "test_program_" in line]
    assert any("test_plan_pending_in_order" in line for line in collected)
    assert "deselected" in done.stdout


def test_the_plugin_skips_tests_that_run_the_program_themselves(tmp_path):
    (tmp_path / "test_direct.py").write_text(
        "from harness import run_program\n\n\ndef test_direct():\n    run_program('staging')\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "mutate_select",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_direct.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'tools'}:{ROOT / 'tests'}"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "left out of mutation runs" in done.stdout
