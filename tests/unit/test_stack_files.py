"""Stack files are read the way the Pulumi CLI reads them (Go yaml.v3: YAML 1.2 plain scalars)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness import ROOT, stack_config
from ms5_components.errors import SettingsErrors
from ms5_components.settings import load_settings
from ms5_components.stack_files import (
    config_string,
    default_string,
    find_project_dir,
    load_yaml,
    stack_config_strings,
    stack_names,
)


@pytest.mark.parametrize(
    ("plain", "value", "as_config"),
    [
        # Only true/false (three spellings) are booleans; YAML 1.1's words stay strings.
        ("off", "off", "off"),
        ("no", "no", "no"),
        ("yes", "yes", "yes"),
        ("on", "on", "on"),
        ("y", "y", "y"),
        ("true", True, "true"),
        ("True", True, "true"),
        ("FALSE", False, "false"),
        ("tRUE", "tRUE", "tRUE"),
        # Integers: 0o / 0x / 0b prefixes, a leading 0 is octal, underscores dropped.
        ("0o17", 15, "15"),
        ("017", 15, "15"),
        ("0x1F", 31, "31"),
        ("0b101", 5, "5"),
        ("1_000", 1000, "1000"),
        ("-1", -1, "-1"),
        ("+5432", 5432, "5432"),
        # Floats as Go's encoding/json writes them.
        ("1e3", 1000.0, "1000"),
        ("1.5", 1.5, "1.5"),
        (".5", 0.5, "0.5"),
        ("08", 8.0, "8"),
        # Not numbers under YAML 1.2 (PyYAML 1.1 reads 12:30 as sexagesimal 750).
        ("12:30", "12:30", "12:30"),
        ("5432/tcp", "5432/tcp", "5432/tcp"),
        # Null becomes JSON null.
        ("~", None, "null"),
        ("null", None, "null"),
        # A date becomes Go's time.Time.String().
        ("2001-12-14", None, "2001-12-14 00:00:00 +0000 UTC"),
    ],
)
def test_plain_scalars_resolve_as_the_cli_resolves_them(plain, value, as_config):
    parsed = load_yaml(f"k: {plain}\n")["k"]
    if value is not None or plain in ("~", "null"):
        assert parsed == value and type(parsed) is type(value)
    assert config_string(parsed) == as_config


def test_pyyaml_would_read_these_differently():
    """The reason for the loader: PyYAML's safe_load is YAML 1.1."""
    assert yaml.safe_load("k: off")["k"] is False
    assert yaml.safe_load("k: 0o17")["k"] == "0o17"
    assert yaml.safe_load("k: 12:30")["k"] == 750
    assert load_yaml("k: off")["k"] == "off"


@pytest.mark.parametrize(
    ("quoted", "as_config"),
    [("'off'", "off"), ('"0o17"', "0o17"), ("'true'", "true"), ('"1_000"', "1_000")],
)
def test_quoted_scalars_stay_strings(quoted, as_config):
    parsed = load_yaml(f"k: {quoted}\n")["k"]
    assert isinstance(parsed, str)
    assert config_string(parsed) == as_config


def test_lists_maps_and_secure_values():
    data = load_yaml("a: [1, off, {y: <&>, x: 0o10}]\nb:\n  secure: v1:abcd\n")
    assert config_string(data["a"]) == '[1,"off",{"x":8,"y":"\\u003c\\u0026\\u003e"}]'
    assert config_string(data["b"]) == "v1:abcd"
    assert default_string([]) == "[]"
    assert default_string(True) == "true"


def test_what_the_program_sees_for_a_stack_file(tmp_path):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n"
        "  ms5:dbTelemetry: off\n"
        "  ms5:dbLogMaxFiles: 0o17\n"
        "  ms5:dbMaxConnections: 1_000\n"
        "  ms5:protectData: false\n"
    )
    config = stack_config_strings(tmp_path, "dev")
    assert config["ms5:dbTelemetry"] == "off"  # PyYAML would have made this False -> "False"
    settings = load_settings(config, stack="dev")
    assert settings.database.telemetry == "off"
    assert settings.database.log_max_files == 15
    assert settings.database.max_connections == 1000
    assert settings.protect_data is False


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        ("ms5:protectData: no", "ms5:protectData", "got 'no'; expected true or false"),
        (
            "ms5:monitoringEnabled: yes",
            "ms5:monitoringEnabled",
            "got 'yes'; expected true or false",
        ),
        ("ms5:protectData: on", "ms5:protectData", "got 'on'; expected true or false"),
        ("ms5:dbTelemetry: no", "ms5:dbTelemetry", "got 'no'; expected one of: off, basic"),
    ],
)
def test_yaml_1_1_booleans_are_refused_as_the_cli_passes_them(tmp_path, line, key, expected):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.dev.yaml").write_text(f"config:\n  {line}\n")
    with pytest.raises(SettingsErrors) as info:
        load_settings(stack_config_strings(tmp_path, "dev"), stack="dev")
    assert f"{key}: {expected}" in str(info.value)


def test_harness_reads_the_committed_stacks_with_the_same_loader():
    staging = stack_config("staging")
    assert staging["ms5:protectData"] == "false"
    assert staging["ms5:dbPort"] == "5433"
    assert staging["ms5:dbTelemetry"] == "off"  # the Pulumi.yaml default, quoted there
    assert stack_config("staging", {"ms5:dbCpus": 1})["ms5:dbCpus"] == "1"


def test_project_discovery_from_the_program_directory():
    assert find_project_dir(ROOT / "infra") == ROOT
    assert find_project_dir(Path("/")) is None
    assert {"production", "staging"} <= set(stack_names(ROOT))
