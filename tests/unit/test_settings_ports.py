"""The host-port, bind-address and plain-text-secret refusals of settings.py called directly:
whole messages, the other stacks walked past, and the free port suggested at the top of the range."""

from __future__ import annotations

from ms5_components.settings import (
    _other_stack_values,
    bind_address_errors,
    is_loopback,
    plaintext_secret_errors,
    port_errors,
)

MINE = {
    "dockerHost": "",
    "bindAddress": "127.0.0.1",
    "dbPort": 5432,
    "prometheusPort": 9190,
    "pushgatewayPort": 9191,
    "grafanaPort": 3100,
    "monitoringEnabled": True,
}
QUIET = {"ms5:prometheusPort": "9290", "ms5:pushgatewayPort": "9291", "ms5:grafanaPort": "3200"}


def _errors(
    values: dict[str, object], others: dict[str, dict[str, str]] | None = None
) -> list[str]:
    found = port_errors(values, prefix="ms5:", stack="staging", other_stacks=others)
    return [str(e) for e in found]


def test_other_stacks_skipped_before_a_clashing_one_do_not_end_the_walk():
    others = {
        "a-other-host": {"ms5:dockerHost": "ssh://deploy@db-host", "ms5:dbPort": "5432", **QUIET},
        "b-other-address": {"ms5:bindAddress": "127.0.0.2", "ms5:dbPort": "5432", **QUIET},
        "c-quiet": {"ms5:dbPort": "6432", **QUIET},
        "d-clash": {"ms5:dbPort": "5432", **QUIET},
        "staging": {"ms5:dbPort": "5432", **QUIET},  # the running stack itself
    }
    assert _errors(MINE, others) == [
        "ms5:dbPort: got 5432; stack d-clash of this project publishes host port 5432 "
        "(ms5:dbPort, set in Pulumi.d-clash.yaml) on the same Docker host (ms5:dockerHost unset "
        "in both: the Docker CLI's engine), and two stacks on one host cannot share a port: "
        "give one of them another port, e.g. `pulumi config set ms5:dbPort 5433`"
    ]
    first_is_self = {"a": {"ms5:dbPort": "5432", **QUIET}, "b": {"ms5:dbPort": "5432", **QUIET}}
    found = port_errors(MINE, prefix="ms5:", stack="a", other_stacks=first_is_self)
    assert [e.key for e in found] == ["ms5:dbPort"] and "stack b of" in str(found[0])


def test_the_clash_message_names_the_shared_docker_host():
    host = "ssh://deploy@db-host"
    others = {"production": {"ms5:dockerHost": host, "ms5:dbPort": "5432", **QUIET}}
    assert _errors({**MINE, "dockerHost": host}, others) == [
        "ms5:dbPort: got 5432; stack production of this project publishes host port 5432 "
        f"(ms5:dbPort, set in Pulumi.production.yaml) on the same Docker host ({host}), and two "
        "stacks on one host cannot share a port: give one of them another port, e.g. "
        "`pulumi config set ms5:dbPort 5433`"
    ]


def _suggested(values: dict[str, object]) -> str:
    (message,) = _errors(values)
    return message.rsplit(" ", 1)[-1].rstrip("`")


def test_the_suggestion_wraps_from_the_top_port_to_1024():
    top = {**MINE, "dbPort": 65535, "grafanaPort": 65535}
    assert _suggested(top) == "1024"
    assert _suggested({**top, "prometheusPort": 1024}) == "1025"
    assert _suggested({**MINE, "dbPort": 65534, "grafanaPort": 65534}) == "65535"
    below = {**MINE, "dbPort": 65534, "grafanaPort": 65534, "prometheusPort": 65535}
    assert _suggested(below) == "1024"
    assert (
        _suggested({**MINE, "dbPort": 5000, "grafanaPort": 5000, "prometheusPort": 5001}) == "5002"
    )


def test_another_stacks_values_skip_what_does_not_parse():
    parsed, in_file = _other_stack_values(
        {"ms5:bindAddress": "not-an-address", "ms5:dbPort": "70000", "ms5:grafanaPort": "4000"},
        "ms5:",
    )
    assert parsed == {
        "dockerHost": "",
        "grafanaPort": 4000,
        "monitoringEnabled": True,
        "prometheusPort": 9090,
        "pushgatewayPort": 9091,
    }
    assert in_file == {"bindAddress", "dbPort", "grafanaPort"}


def test_names_are_not_loopback_addresses():
    assert not is_loopback("db-host")
    assert not is_loopback("")
    assert is_loopback("localhost")


def test_bind_address_message():
    assert [str(e) for e in bind_address_errors({"bindAddress": "10.0.0.5"}, prefix="ms5:")] == [
        "ms5:bindAddress: got '10.0.0.5'; not a loopback address, so every published port "
        "(database, Prometheus, Pushgateway, Grafana) is reachable from other machines. Keep "
        "127.0.0.1 (`pulumi config set ms5:bindAddress 127.0.0.1`) or, when a firewall or "
        "proxy fronts the host, opt in with `pulumi config set ms5:allowNonLoopbackBind true`"
    ]
    opted = {"bindAddress": "10.0.0.5", "allowNonLoopbackBind": True}
    assert bind_address_errors(opted, prefix="ms5:") == []
    assert bind_address_errors({"bindAddress": "127.0.0.1"}, prefix="ms5:") == []


def test_plain_text_secret_message():
    raw = {"ms5:dbPassword": "plain", "ms5:dbPort": "5432"}
    found = plaintext_secret_errors(raw, prefix="ms5:", secret_keys=())
    assert [str(e) for e in found] == [
        "ms5:dbPassword: (secret, not shown) is stored in plain text in the stack file; remove "
        "it with `pulumi config rm ms5:dbPassword` and set it encrypted with `pulumi config set "
        "--secret ms5:dbPassword` (if the file was committed, choose a new value: the old one "
        "is in the history)"
    ]
    assert plaintext_secret_errors(raw, prefix="ms5:", secret_keys=("ms5:dbPassword",)) == []
