"""Generated files (Pulumi.yaml's config block, README settings and graph) are current."""

from __future__ import annotations

import gen_docs
from harness import ROOT
from ms5_components.settings import SPECS
from ms5_components.stack_files import load_yaml


def test_pulumi_yaml_is_generated_from_specs():
    assert (ROOT / "Pulumi.yaml").read_text() == gen_docs.pulumi_yaml_text()


def test_readme_generated_sections_are_current():
    assert (ROOT / "README.md").read_text() == gen_docs.render()[gen_docs.README]


def test_pulumi_yaml_shape_is_what_the_cli_accepts():
    project = load_yaml((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "ms5"
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "uv", "virtualenv": ".venv"},
    }
    assert project["main"] == "infra/"
    declared = project["config"]
    for spec in SPECS:
        if not spec.declared_in_project:
            assert spec.key not in declared
            continue
        decl = declared[spec.key]
        # The CLI's project schema: type in string/integer/boolean/array, arrays need items.
        assert decl["type"] in {"string", "integer", "boolean", "array"}
        assert set(decl) <= {"type", "description", "default", "secret", "items"}
        if decl["type"] == "array":
            assert decl["items"] == {"type": "string"}
        expected_python = {"string": str, "integer": int, "boolean": bool, "array": list}
        assert isinstance(decl["default"], expected_python[decl["type"]]), spec.key
        # Every default passes its own validation.
        spec.parse(_raw(decl["default"]))


def _raw(value):
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def test_stack_files_hold_no_secrets_and_only_known_keys():
    known = {spec.qualified for spec in SPECS}
    secret = {spec.qualified for spec in SPECS if spec.secret}
    for stack in ("staging", "production"):
        data = load_yaml((ROOT / f"Pulumi.{stack}.yaml").read_text())
        keys = set(data["config"])
        assert keys <= known, keys - known
        assert not keys & secret
        assert "encryptionsalt" not in data and "secretsprovider" not in data


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "./ms5 deploy staging" in readme and "./ms5 test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./ms5 test" in ci
