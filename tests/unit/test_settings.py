"""One test per validation rule: each bad value stops the program with a message naming its key."""

from __future__ import annotations

import pulumi
import pytest

from ms5_components.errors import SettingsErrors
from ms5_components.settings import Secret, load_settings, parse_image
from stacks import overrides_for

GOOD_DIGEST = "sha256:" + "a" * 64


def load(**values: object):
    raw = {f"ms5:{k}": (v if isinstance(v, str) else _enc(v)) for k, v in values.items()}
    return load_settings(raw, stack="test")


def _enc(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def error_of(**values: object) -> str:
    with pytest.raises(SettingsErrors) as info:
        load(**values)
    return str(info.value)


def test_defaults_are_valid():
    s = load()
    assert s.environment == "staging"
    assert s.database.image.reference == "timescale/timescaledb:2.19.3-pg17"
    assert s.database.password is None
    assert s.prefix() == "ms5-test"


@pytest.mark.parametrize(
    ("values", "key", "expected"),
    [
        ({"dbPrt": 5432}, "ms5:dbPrt", "did you mean ms5:dbPort?"),
        ({"nonsense": "x"}, "ms5:nonsense", "unknown setting"),
        ({"dbPort": "fifty"}, "ms5:dbPort", "expected a whole number from 1 to 65535"),
        ({"dbPort": 70000}, "ms5:dbPort", "expected a whole number from 1 to 65535"),
        ({"dbPort": 0}, "ms5:dbPort", "expected a whole number from 1 to 65535"),
        ({"dbMemoryMb": 100}, "ms5:dbMemoryMb", "from 512 to"),
        ({"dbCpus": 0}, "ms5:dbCpus", "from 1 to 256"),
        ({"dbHealthTimeoutSeconds": -5}, "ms5:dbHealthTimeoutSeconds", "from 10 to 3600"),
        ({"protectData": "yes"}, "ms5:protectData", "expected true or false"),
        ({"environment": "prod"}, "ms5:environment", "one of: development, staging, production"),
        ({"dbRestartPolicy": "sometimes"}, "ms5:dbRestartPolicy", "one of: no, on-failure"),
        ({"dbTelemetry": "full"}, "ms5:dbTelemetry", "one of: off, basic"),
        ({"dbImage": "timescale/timescaledb"}, "ms5:dbImage", "explicit tag"),
        ({"dbImage": "timescale/timescaledb:latest"}, "ms5:dbImage", "'latest' floats"),
        ({"dbImage": "timescale/timescaledb:2.19.3"}, "ms5:dbImage", "names the PostgreSQL major"),
        ({"dbImage": "Timescale/TSDB:x y"}, "ms5:dbImage", "expected an image reference"),
        (
            {"dbImage": "timescale/timescaledb:2.19.3-pg17@sha256:abc"},
            "ms5:dbImage",
            "image reference",
        ),
        ({"bindAddress": "localhost"}, "ms5:bindAddress", "IPv4 or IPv6 address"),
        ({"dockerHost": "/var/run/docker.sock"}, "ms5:dockerHost", "unix:///var/run/docker.sock"),
        ({"dbName": "MS5-db"}, "ms5:dbName", "lower-case SQL identifier"),
        ({"dbSuperuser": "1admin"}, "ms5:dbSuperuser", "lower-case SQL identifier"),
        ({"dbLogMaxSize": "50MB"}, "ms5:dbLogMaxSize", "a size such as 50m"),
        ({"dbServerSettings": "work_mem=1MB"}, "ms5:dbServerSettings", "list of strings"),
        (
            {"dbServerSettings": ["work_mem"]},
            "ms5:dbServerSettings",
            "item 0 ('work_mem'): expected name=value",
        ),
        ({"dbServerSettings": ["port=5433"]}, "ms5:dbServerSettings", "managed by the component"),
        (
            {"dbServerSettings": ["shared_preload_libraries=pg_stat_statements"]},
            "ms5:dbServerSettings",
            "must keep timescaledb",
        ),
        (
            {"dbServerSettings": ["work_mem=1MB", "WORK_MEM=2MB"]},
            "ms5:dbServerSettings",
            "work_mem is set twice",
        ),
        (
            {"dbShmSizeMb": 4096, "dbMemoryMb": 2048},
            "ms5:dbShmSizeMb",
            "less than ms5:dbMemoryMb (2048)",
        ),
        (
            {"environment": "production", "dbImage": "timescale/timescaledb:2.19.3-pg17"},
            "ms5:dbImage",
            "production needs a pinned digest",
        ),
    ],
)
def test_rule(values, key, expected):
    message = error_of(**values)
    assert f"{key}:" in message
    assert expected in message
    assert "pulumi config" in message  # says what to do next


def test_secret_value_is_never_echoed():
    message = error_of(dbPassword="short pw")
    assert "ms5:dbPassword" in message
    assert "short pw" not in message and "short" not in message.replace("(secret", "")
    assert "(secret, not shown)" in message
    assert "at least 16 characters" in message


def test_secret_settings_do_not_print():
    s = load(dbPassword="a-very-long-password-123")
    assert isinstance(s.database.password, Secret)
    assert "a-very-long-password-123" not in repr(s)
    assert s.database.password.reveal() == "a-very-long-password-123"


def test_all_errors_reported_at_once():
    message = error_of(dbPort=0, dbCpus=0, environment="x")
    assert message.startswith("3 invalid stack setting(s)")
    for key in ("ms5:dbPort", "ms5:dbCpus", "ms5:environment"):
        assert key in message


def test_production_with_digest_is_accepted():
    pinned = {
        k.split(":", 1)[1]: v for k, v in overrides_for("production").items() if k != "ms5:dbImage"
    }
    s = load(
        environment="production",
        dbImage=f"timescale/timescaledb:2.19.3-pg17@{GOOD_DIGEST}",
        **pinned,
    )
    assert s.is_production and s.database.image.digest == GOOD_DIGEST
    assert s.database.image.pg_major == 17


def test_image_parsing():
    ref = parse_image(f"registry.example:5000/team/tsdb:2.19.3-pg17@{GOOD_DIGEST}")
    assert ref.repository == "registry.example:5000/team/tsdb"
    assert ref.tag == "2.19.3-pg17"
    assert ref.reference.endswith(GOOD_DIGEST)


def test_other_namespaces_are_ignored():
    assert (
        load_settings({"docker:host": "x", "ms5:dbPort": "5432"}, stack="s").database.port == 5432
    )


def test_program_stops_with_one_clear_message(program):
    with pytest.raises(pulumi.RunError) as info:
        program("staging", {"ms5:dbPort": "99999", "ms5:dbMemroyMb": "1"})
    text = str(info.value)
    assert "ms5:dbPort: got '99999'; expected a whole number from 1 to 65535" in text
    assert "ms5:dbMemroyMb: unknown setting; did you mean ms5:dbMemoryMb?" in text
    assert "Traceback" not in text
