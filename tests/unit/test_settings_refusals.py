"""Mistakes a user makes in the settings, each refused before any resource is created.

Every message names the key, the value (never a secret's) and the fix; one run reports all.
"""

from __future__ import annotations

import pulumi
import pytest

from harness import run_program
from ms5_components.errors import SettingsErrors
from ms5_components.settings import (
    NON_LOOPBACK_BIND_LABEL,
    PUBLISHED_PORTS,
    SPECS,
    is_loopback,
    load_settings,
)
from stacks import overrides_for

CONTAINER = "docker:index/container:Container"
PASSWORD = "a-long-enough-password-1234"
SECRET_SPECS = [s.qualified for s in SPECS if s.secret]


def refused(raw: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(SettingsErrors) as info:
        load_settings(raw, stack=str(kwargs.pop("stack", "test")), **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def program_error(stack: str, overrides: dict[str, object], **kwargs: object) -> str:
    with pytest.raises(pulumi.RunError) as info:
        run_program(stack, overrides, **kwargs)  # type: ignore[arg-type]
    text = str(info.value)
    assert "Traceback" not in text
    return text


# ---- secrets in plain text --------------------------------------------------------------------


def test_every_secret_setting_is_declared():
    assert SECRET_SPECS == [
        "ms5:dbPassword",
        "ms5:exporterPassword",
        "ms5:grafanaAdminPassword",
        "ms5:grafanaDbPassword",
    ]


@pytest.mark.parametrize("key", SECRET_SPECS)
def test_plain_text_secret_is_refused_without_showing_it(key):
    message = refused({key: PASSWORD}, secret_keys=())
    assert message.startswith("1 invalid stack setting(s)")
    assert f"{key}: (secret, not shown) is stored in plain text in the stack file" in message
    assert f"`pulumi config set --secret {key}`" in message
    assert f"`pulumi config rm {key}`" in message
    assert PASSWORD not in message


@pytest.mark.parametrize("key", SECRET_SPECS)
def test_encrypted_secret_is_accepted(key):
    settings = load_settings({key: PASSWORD}, stack="test", secret_keys=(key,))
    assert settings.raw[key.split(":")[1]] is not None


def test_program_refuses_a_plain_text_password_before_any_resource():
    message = program_error("staging", {"ms5:dbPassword": PASSWORD})
    assert "ms5:dbPassword: (secret, not shown) is stored in plain text" in message
    assert PASSWORD not in message


def test_program_accepts_the_password_when_it_is_a_secret():
    run = run_program("staging", {"ms5:dbPassword": PASSWORD}, secret_keys=("ms5:dbPassword",))
    assert run.one(CONTAINER, "timescaledb-container").is_secret("uploads")


# ---- namespaces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("msS:dbPort", "did you mean ms5:dbPort?"),
        ("ms5_:x", "did you mean ms5:x?"),
        ("MS5:dbPort", "did you mean ms5:dbPort?"),
        ("dokcer:host", "did you mean docker:host?"),
        ("aws:region", "remove it with `pulumi config rm aws:region`"),
    ],
)
def test_unknown_namespace_is_refused_with_a_suggestion(key, hint):
    message = refused({key: "5432"})
    assert f"{key}: got '5432'; unknown namespace" in message
    assert "keys are ms5:<setting> or a provider's (docker:, command:, random:, pulumi:)" in message
    assert hint in message


def test_misspelled_namespace_of_a_secret_hides_the_value():
    message = refused({"msS:dbPassword": PASSWORD})
    assert "msS:dbPassword: got (secret, not shown)" in message
    assert "`pulumi config set --secret ms5:dbPassword <value>`" in message
    assert PASSWORD not in message


def test_a_key_without_namespace_is_refused():
    assert "dbPort: got '1'; unknown namespace 'dbPort'" in refused({"dbPort": "1"})


@pytest.mark.parametrize(
    "key", ["docker:host", "command:x", "random:x", "pulumi:tags", "pulumi:template"]
)
def test_provider_and_cli_namespaces_are_allowed(key):
    assert load_settings({key: "v"}, stack="test").database.port == 5432


def test_program_refuses_a_misspelled_namespace():
    message = program_error("staging", {"msS:dbPort": 5434})
    assert "msS:dbPort: got '5434'; unknown namespace 'msS'" in message


# ---- production ---------------------------------------------------------------------------------

IMAGE_KEYS = [s.qualified for s in SPECS if s.key.endswith("Image")]


def test_production_reports_every_missing_digest_with_other_errors_in_one_run():
    message = program_error("production", {"ms5:dbPort": "fifty"})
    assert message.startswith("error: ") or "invalid stack setting(s)" in message
    assert f"{len(IMAGE_KEYS) + 1} invalid stack setting(s)" in message
    assert len(IMAGE_KEYS) == 5
    for key in IMAGE_KEYS:
        assert f"{key}: got '" in message
    assert message.count("run `./ms5 pin-images production`") == len(IMAGE_KEYS)
    assert "ms5:dbPort: got 'fifty'" in message


def test_production_refuses_data_protection_off():
    message = program_error("production", overrides_for("production", {"ms5:protectData": False}))
    assert "1 invalid stack setting(s)" in message
    assert "ms5:protectData: got 'false'; production keeps its data and backup volumes" in message
    assert "`pulumi config set ms5:protectData true`" in message


def test_staging_may_turn_data_protection_off():
    raw = {"ms5:environment": "staging", "ms5:protectData": "false"}
    assert load_settings(raw, stack="staging").protect_data is False


def test_pinned_production_with_protection_is_accepted():
    raw = {k: str(v) for k, v in overrides_for("production").items()}
    raw["ms5:environment"] = "production"
    assert load_settings(raw, stack="production").is_production


# ---- bind address -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.10.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("128.0.0.1", False),
    ],
)
def test_loopback(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("address", ["0.0.0.0", "10.0.0.5", "::"])
def test_non_loopback_bind_needs_the_opt_in(address):
    message = refused({"ms5:bindAddress": address})
    assert f"ms5:bindAddress: got {address!r}; not a loopback address" in message
    assert "`pulumi config set ms5:allowNonLoopbackBind true`" in message
    settings = load_settings(
        {"ms5:bindAddress": address, "ms5:allowNonLoopbackBind": "true"}, stack="test"
    )
    assert settings.allow_non_loopback_bind and settings.bind_address == address


def _labels(reg) -> dict[str, str]:
    return {x["label"]: x["value"] for x in reg.plain("labels") or []}


def test_opted_in_containers_that_publish_ports_carry_the_policy_label():
    run = run_program("staging", {"ms5:bindAddress": "0.0.0.0", "ms5:allowNonLoopbackBind": True})
    containers = run.by_type(CONTAINER)
    publishing = [c for c in containers if c.plain("ports")]
    assert len(publishing) == 4, [c.name for c in publishing]
    for reg in publishing:
        assert _labels(reg).get(NON_LOOPBACK_BIND_LABEL) == "true", reg.urn
        assert all(p["ip"] == "0.0.0.0" for p in reg.plain("ports"))
    for reg in containers:
        if not reg.plain("ports"):
            assert NON_LOOPBACK_BIND_LABEL not in _labels(reg), reg.urn
    # Volumes and networks never get it: a label change would replace them.
    for reg in run.registrations.values():
        if reg.type in ("docker:index/volume:Volume", "docker:index/network:Network"):
            assert NON_LOOPBACK_BIND_LABEL not in _labels(reg), reg.urn


def test_without_the_opt_in_no_container_carries_the_label():
    run = run_program("staging")
    containers = run.by_type(CONTAINER)
    assert containers
    assert all(NON_LOOPBACK_BIND_LABEL not in _labels(c) for c in containers)


def test_program_refuses_a_non_loopback_bind_without_the_opt_in():
    message = program_error("staging", {"ms5:bindAddress": "0.0.0.0"})
    assert "ms5:bindAddress: got '0.0.0.0'" in message and "ms5:allowNonLoopbackBind" in message


# ---- host ports ---------------------------------------------------------------------------------


def test_published_ports_table_names_every_port_setting():
    port_specs = {s.key for s in SPECS if s.key.endswith("Port")}
    assert {key for key, _ in PUBLISHED_PORTS} == port_specs


def test_two_services_of_one_stack_on_one_port():
    message = refused({"ms5:dbPort": "3000"})
    assert (
        "ms5:grafanaPort: got 3000; ms5:dbPort of this stack publishes the same host port "
        "and each service needs its own: `pulumi config set ms5:grafanaPort 3001`" in message
    )


def test_several_clashes_are_reported_together():
    message = refused({"ms5:prometheusPort": "5432", "ms5:pushgatewayPort": "5432"})
    assert "2 invalid stack setting(s)" in message
    assert "ms5:prometheusPort: got 5432; ms5:dbPort of this stack" in message
    assert "ms5:pushgatewayPort: got 5432; ms5:dbPort of this stack" in message


def test_monitoring_off_frees_its_ports():
    raw = {"ms5:monitoringEnabled": "false", "ms5:dbPort": "3000"}
    assert load_settings(raw, stack="test").database.port == 3000


PRODUCTION_FILE = {"ms5:environment": "production", "ms5:dbPort": "5432"}


def test_a_port_another_stack_sets_in_its_file():
    message = refused(
        {"ms5:dbPort": "5432"}, stack="staging", other_stacks={"production": PRODUCTION_FILE}
    )
    assert (
        "ms5:dbPort: got 5432; stack production of this project publishes host port 5432 "
        "(ms5:dbPort, set in Pulumi.production.yaml) on the same Docker host "
        "(ms5:dockerHost unset in both: the Docker CLI's engine)" in message
    )
    assert "`pulumi config set ms5:dbPort 5433`" in message


def test_a_port_another_stack_uses_by_default():
    message = refused({}, stack="staging", other_stacks={"production": PRODUCTION_FILE})
    # Staging left at the defaults: Prometheus, Pushgateway and Grafana clash with production's.
    for key, port in (("prometheusPort", 9090), ("pushgatewayPort", 9091), ("grafanaPort", 3000)):
        assert f"ms5:{key}: got {port}; stack production" in message
        assert f"(ms5:{key}, its default)" in message


@pytest.mark.parametrize(
    "mine",
    [
        {"ms5:dockerHost": "ssh://deploy@db-host"},  # another engine
        {"ms5:bindAddress": "127.0.0.2"},  # another loopback address
    ],
)
def test_other_hosts_or_addresses_do_not_clash(mine):
    raw = {"ms5:dbPort": "5432", "ms5:prometheusPort": "9190", "ms5:pushgatewayPort": "9191"}
    raw |= {"ms5:grafanaPort": "3100", **mine}
    settings = load_settings(raw, stack="staging", other_stacks={"production": PRODUCTION_FILE})
    assert settings.database.port == 5432


def test_a_wildcard_bind_clashes_with_every_address():
    raw = {"ms5:dbPort": "5432", "ms5:bindAddress": "0.0.0.0", "ms5:allowNonLoopbackBind": "true"}
    raw |= {"ms5:prometheusPort": "9190", "ms5:pushgatewayPort": "9191", "ms5:grafanaPort": "3100"}
    message = refused(raw, stack="staging", other_stacks={"production": PRODUCTION_FILE})
    assert "1 invalid stack setting(s)" in message and "ms5:dbPort: got 5432" in message


def test_the_suggested_port_is_free_in_both_stacks():
    other = {"production": {**PRODUCTION_FILE, "ms5:prometheusPort": "5433"}}
    message = refused({"ms5:dbPort": "5432"}, stack="staging", other_stacks=other)
    assert "`pulumi config set ms5:dbPort 5434`" in message


def test_the_stack_itself_is_not_another_stack():
    raw = {"ms5:dbPort": "5432"}
    assert load_settings(raw, stack="staging", other_stacks={"staging": raw})


def test_program_reads_the_other_committed_stack_files():
    """Staging given production's database port is refused, naming production's stack file."""
    message = program_error("staging", {"ms5:dbPort": 5432})
    assert "ms5:dbPort: got 5432; stack production of this project publishes host port 5432" in (
        message
    )
    assert "set in Pulumi.production.yaml" in message


def test_committed_stacks_pass_the_port_rules():
    assert run_program("staging").by_type(CONTAINER)
    assert run_program("production", overrides_for("production")).by_type(CONTAINER)


@pytest.mark.parametrize("environment", ["staging", "development"])
def test_the_stack_named_production_is_environment_production(environment):
    message = refused({"ms5:environment": environment}, stack="production")
    assert "1 invalid stack setting(s)" in message
    assert f"ms5:environment: got {environment!r} in the stack named production" in message
    assert "`pulumi config set --stack production ms5:environment production`" in message


def test_program_refuses_production_turned_into_staging():
    message = program_error(
        "production", overrides_for("production", {"ms5:environment": "staging"})
    )
    assert "ms5:environment: got 'staging' in the stack named production" in message


def test_secret_keys_from_the_language_host_environment(monkeypatch):
    """Under the CLI the secret keys arrive in PULUMI_CONFIG_SECRET_KEYS, not through the SDK."""
    import json

    from harness import ProgramMocks, stack_config
    from ms5_components.settings import from_pulumi_config

    pulumi.runtime.set_mocks(ProgramMocks(), project="ms5", stack="staging")
    pulumi.runtime.set_all_config({}, [])
    config = stack_config("staging", {"ms5:dbPassword": PASSWORD})
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["ms5:dbPassword"]))
    settings = from_pulumi_config()
    assert settings.database.password is not None
    assert settings.database.password.reveal() == PASSWORD

    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    with pytest.raises(SettingsErrors, match=r"ms5:dbPassword: \(secret, not shown\) is stored"):
        from_pulumi_config()


def _from_config(monkeypatch, project_dir, config):
    import json

    from harness import ProgramMocks
    from ms5_components.settings import from_pulumi_config

    pulumi.runtime.set_mocks(ProgramMocks(), project="ms5", stack="staging")
    pulumi.runtime.set_all_config({}, [])
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    return from_pulumi_config(project_dir)


def test_every_other_stack_file_of_the_project_is_read(tmp_path, monkeypatch):
    import shutil

    from harness import ROOT, stack_config

    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.qa.yaml").write_text(
        "config:\n  ms5:prometheusPort: 9190  # staging's\n  ms5:dbPassword:\n    secure: v1:x\n"
    )
    with pytest.raises(SettingsErrors) as info:
        _from_config(monkeypatch, tmp_path, stack_config("staging"))
    message = str(info.value)
    assert "ms5:prometheusPort: got 9190; stack qa of this project" in message
    assert "(ms5:prometheusPort, set in Pulumi.qa.yaml)" in message
    # qa's other ports are defaults (5432, 9091, 3000): no clash with staging's 5433, 9191, 3100.
    assert message.startswith("1 invalid stack setting(s)")


def test_an_unreadable_other_stack_file_is_named(tmp_path, monkeypatch):
    import shutil

    from harness import ROOT, stack_config

    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.broken.yaml").write_text("config: [\n")
    with pytest.raises(SettingsErrors, match=r"Pulumi\.broken\.yaml: cannot be read"):
        _from_config(monkeypatch, tmp_path, stack_config("staging"))
