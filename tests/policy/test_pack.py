"""The policy pack, run as the Pulumi CLI runs it, against the real program's resources.

Each stack's program is evaluated under mocks (tests/harness.py); the resources it registers are
sent to the pack over the analyzer protocol (tests/policy/analyzer.py). The staging stack passes.
The production stack fails today with exactly one mandatory violation, production-has-benchmark:
the Benchmark component is not in the program yet (the Backup is). The same production stack
with the missing resources added in exactly the shape the lifecycle contract fixes
(CONTRACTS.md) passes, and every rule has a mutation of the program's resources that
yields exactly its violation.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator

import pytest

from analyzer import PACK_DIR, UNKNOWN_STRING, Diagnostic, Pack, Record, records
from harness import SECRET_SIG, SECRET_VALUE, ProgramRun, run_program, stack_config
from stacks import overrides_for

BACKUP = "pulumi-python:dynamic/ms5:Backup"
VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
BENCHMARK = "pulumi-python:dynamic/ms5:Benchmark"
STACKS = ("staging", "production")


@pytest.fixture(scope="module")
def runs() -> dict[str, ProgramRun]:
    return {stack: run_program(stack, overrides_for(stack)) for stack in STACKS}


@pytest.fixture(scope="module")
def packs() -> Iterator[dict[str, Pack]]:
    started = {stack: Pack(stack, stack_config(stack, overrides_for(stack))) for stack in STACKS}
    try:
        yield started
    finally:
        for pack in started.values():
            pack.close()


def _pack_config(stack: str) -> dict[str, object]:
    return json.loads((PACK_DIR / "config" / f"{stack}.json").read_text())


def analyze(
    pack: Pack, resources: list[Record], pack_config: dict[str, object] | None = None
) -> list[Diagnostic]:
    pack.configure(_pack_config(pack.stack) if pack_config is None else pack_config)
    return pack.analyze(resources)


def _by_name(resources: list[Record], name: str) -> Record:
    [found] = [r for r in resources if r.name == name]
    return found


def with_lifecycle(resources: list[Record], stack: str) -> list[Record]:
    """The stack plus a Backup before the migrations and a Verification and a Benchmark after
    them, with the inputs the lifecycle contract fixes."""
    out = copy.deepcopy(resources)
    root = out[0].urn
    migrations = _by_name(out, "migrations")
    container = _by_name(out, "timescaledb-container")

    def dynamic(type_: str, name: str, props: dict[str, object], deps: list[str]) -> Record:
        urn = f"urn:pulumi:{stack}::ms5::pulumi:pulumi:Stack${type_}::{name}"
        return Record(
            type=type_,
            name=name,
            urn=urn,
            parent=root,
            inputs=copy.deepcopy(props),
            outputs=copy.deepcopy(props),
            dependencies=deps,
        )

    # The program's own Backup when it has one (it runs before the container and the
    # migrations); else one with the contract's inputs.
    existing = [r for r in out if r.type == BACKUP]
    backup = (
        existing[0]
        if existing
        else dynamic(
            BACKUP,
            "backup",
            {"verify": True, "keepCount": 14, "maxAgeDays": 30, "mandatory": True},
            [container.urn],
        )
    )
    verification = dynamic(VERIFICATION, "verification", {"database": "ms5"}, [migrations.urn])
    benchmark = dynamic(
        BENCHMARK,
        "benchmark",
        {
            "thresholds": {
                "minIngestRowsPerSecond": 50000,
                "maxQueryP95Ms": 250,
                "minCompressionRatio": 3,
            },
            "gate": True,
        },
        [migrations.urn],
    )
    # The program builds its own Verification and Benchmark: add only what it lacks.
    present = {r.type for r in out}
    extra = [r for r in (verification, benchmark) if r.type not in present]
    if existing:
        return [*out, *extra]
    migrations.dependencies.append(backup.urn)
    return [*out, backup, *extra]


def violated(diagnostics: list[Diagnostic]) -> set[str]:
    return {d.policy for d in diagnostics}


def _secret_values(run: ProgramRun) -> set[str]:
    """Every plaintext the program marked secret (mock passwords, DSNs)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if value.get(SECRET_SIG) == SECRET_VALUE:
                inner = value.get("value")
                if isinstance(inner, str) and len(inner) >= 8:
                    found.add(inner)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for reg in run.registrations.values():
        walk(reg.inputs)
    return found


# ------------------------------------------------------------------------------------------------
# The protocol and the two stacks
# ------------------------------------------------------------------------------------------------


def test_pack_answers_the_analyzer_protocol(packs):
    from ms5_policy.catalog import POLICIES

    for stack, pack in packs.items():
        assert pack.handshake_code.name == "UNIMPLEMENTED"  # the CLI falls back, as for any pack
        assert pack.info.name == "ms5-timescaledb"
        assert pack.info.supportsConfig
        names = [p.name for p in pack.info.policies]
        assert names == [p.name for p in POLICIES]
        for policy in pack.info.policies:
            assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", policy.name), policy.name
            description = policy.description
            assert description.endswith(".") and "\n" not in description, policy.name
            assert description.count(". ") == 0, (policy.name, description)
            assert policy.remediation_steps, policy.name
        expected = "mandatory" if stack == "production" else "advisory"
        assert set(pack.defaults().values()) == {expected}, stack


def test_staging_passes_every_policy(runs, packs):
    diagnostics = analyze(packs["staging"], records(runs["staging"]))
    assert diagnostics == []


def test_production_passes_every_policy(runs, packs):
    # The program has its own Backup (before the migrations) and Benchmark (gated in production).
    diagnostics = analyze(packs["production"], records(runs["production"]))
    assert diagnostics == [], [d.message for d in diagnostics]


@pytest.mark.parametrize("stack", STACKS)
def test_stack_with_contracted_lifecycle_passes(runs, packs, stack):
    resources = with_lifecycle(records(runs[stack]), stack)
    assert analyze(packs[stack], resources) == []


# ------------------------------------------------------------------------------------------------
# One mutation per rule: exactly its violation
# ------------------------------------------------------------------------------------------------

Mutation = Callable[[list[Record]], None]


def _set(name: str, key: str, value: object) -> Mutation:
    return lambda rs: _by_name(rs, name).set(key, value)


def _edit(name: str, key: str, edit: Callable[[object], object]) -> Mutation:
    def mutate(rs: list[Record]) -> None:
        record = _by_name(rs, name)
        record.set(key, edit(copy.deepcopy(record.inputs.get(key))))

    return mutate


def _envs(name: str, edit: Callable[[list[str]], list[str]]) -> Mutation:
    return _edit(name, "envs", lambda envs: edit(list(envs)))  # type: ignore[arg-type]


def _drop_deps(name: str, *dependencies: str) -> Mutation:
    def mutate(rs: list[Record]) -> None:
        record = _by_name(rs, name)
        for dep in dependencies:
            record.drop_dependency(_by_name(rs, dep).urn)

    return mutate


def _remove(name: str) -> Mutation:
    def mutate(rs: list[Record]) -> None:
        gone = _by_name(rs, name)
        rs.remove(gone)
        for r in rs:
            r.drop_dependency(gone.urn)

    return mutate


def _option(name: str, **options: object) -> Mutation:
    def mutate(rs: list[Record]) -> None:
        record = _by_name(rs, name)
        for key, value in options.items():
            setattr(record, key, value)

    return mutate


def _chain(*mutations: Mutation) -> Mutation:
    def mutate(rs: list[Record]) -> None:
        for m in mutations:
            m(rs)

    return mutate


def _drop_migration(filename: str) -> Mutation:
    def mutate(rs: list[Record]) -> None:
        record = _by_name(rs, "migrations")
        for props in (record.inputs, record.outputs):
            props["migrations"].pop(filename)

    return mutate


DB, EXPORTER, PROM = (
    "timescaledb-container",
    "monitoring-exporter-container",
    "monitoring-prometheus-container",
)
GRAFANA, GATEWAY = "monitoring-grafana-container", "monitoring-prometheus-pushgateway"

MUTATIONS: dict[str, tuple[str, Mutation]] = {
    "unpinned-image": (
        "images-pinned",
        _set("monitoring-grafana-image", "name", "grafana/grafana:12.1.1"),
    ),
    "latest-container-image": ("images-pinned", _set(GATEWAY, "image", "prom/pushgateway:latest")),
    "privileged": ("no-privileged-containers", _set(GRAFANA, "privileged", True)),
    "sys-admin": (
        "no-privileged-containers",
        _set(DB, "capabilities", {"drops": ["ALL"], "adds": ["CHOWN", "SYS_ADMIN"]}),
    ),
    "host-network": ("no-host-namespaces", _set(EXPORTER, "networkMode", "host")),
    "host-pid": ("no-host-namespaces", _set(PROM, "pidMode", "host")),
    "docker-socket": (
        "no-sensitive-host-mounts",
        _edit(
            PROM,
            "volumes",
            lambda vs: [
                *vs,  # type: ignore[misc]
                {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"},
            ],
        ),
    ),
    "no-no-new-privileges": ("no-new-privileges", _set(GATEWAY, "securityOpts", [])),
    "no-memory-limit": ("resource-limits", _set(EXPORTER, "memory", None)),
    "no-cpu-limit": ("resource-limits", _set(PROM, "cpus", None)),
    "no-shm": ("resource-limits", _set(DB, "shmSize", None)),
    "no-healthcheck": ("health-checks", _set(GATEWAY, "healthcheck", None)),
    "no-restart": ("restart-policy", _set(GRAFANA, "restart", "no")),
    "no-log-rotation": ("log-rotation", _set(PROM, "logOpts", {})),
    "public-port": (
        "ports-bound-to-loopback",
        _set(GRAFANA, "ports", [{"internal": 3000, "external": 3000, "ip": "0.0.0.0"}]),
    ),
    "port-without-ip": (
        "ports-bound-to-loopback",
        _set(DB, "ports", [{"internal": 5432, "external": 5432}]),
    ),
    "pgdata-bind-mount": (
        "pgdata-on-named-volume",
        _edit(
            DB,
            "volumes",
            lambda vs: [
                {"hostPath": "/srv/pgdata", "containerPath": v["containerPath"]}  # type: ignore[index]
                if v["containerPath"] == "/var/lib/postgresql/data"  # type: ignore[index]
                else v
                for v in vs  # type: ignore[attr-defined]
            ],
        ),
    ),
    "no-delete-before-replace": (
        "database-delete-before-replace",
        _option(DB, delete_before_replace=False),
    ),
    "inline-password-env": (
        "secrets-not-in-plain-sight",
        _envs(EXPORTER, lambda e: [*e, "DATA_SOURCE_PASS=plain-text-password-0001"]),
    ),
    "password-in-url": (
        "secrets-not-in-plain-sight",
        _envs(
            EXPORTER, lambda e: [*e, "DATA_SOURCE_NAME=postgresql://u:plain-text-0002@db:5432/ms5"]
        ),
    ),
    "secret-upload-not-secret-output": (
        "secrets-not-in-plain-sight",
        _option(DB, additional_secret_outputs=[]),
    ),
    "grafana-default-password": (
        "grafana-hardened",
        _envs(
            GRAFANA,
            lambda e: [x for x in e if not x.startswith("GF_SECURITY_ADMIN_PASSWORD__FILE=")],
        ),
    ),
    "grafana-anonymous": (
        "grafana-hardened",
        _envs(
            GRAFANA,
            lambda e: [x.replace("ANONYMOUS_ENABLED=false", "ANONYMOUS_ENABLED=true") for x in e],
        ),
    ),
    "grafana-sign-up": (
        "grafana-hardened",
        _envs(GRAFANA, lambda e: [x for x in e if not x.startswith("GF_USERS_ALLOW_SIGN_UP=")]),
    ),
    "prometheus-admin-api": (
        "prometheus-hardened",
        _edit(PROM, "command", lambda c: [*c, "--web.enable-admin-api"]),  # type: ignore[misc]
    ),
    "prometheus-no-retention": (
        "prometheus-hardened",
        _edit(PROM, "command", lambda c: [a for a in c if "retention.size" not in a]),  # type: ignore[attr-defined]
    ),
    "backup-unverified": ("backups-verified-and-retained", _set("backup", "verify", False)),
    "backup-keeps-too-few": ("backups-verified-and-retained", _set("backup", "keepCount", 3)),
    "backup-not-mandatory": ("backups-verified-and-retained", _set("backup", "mandatory", False)),
    "benchmark-ungated": ("benchmark-thresholds", _set("benchmark", "gate", False)),
    "benchmark-threshold-missing": (
        "benchmark-thresholds",
        _set("benchmark", "thresholds", {"minIngestRowsPerSecond": 50000, "maxQueryP95Ms": 250}),
    ),
    "hypertables-without-policies": (
        "hypertables-have-policies",
        _drop_migration("V0004__columnstore_and_retention.sql"),
    ),
    "migrations-before-database": (
        "migrations-after-healthy-database",
        # (the Backup the migrations wait for waits for the database too)
        _chain(
            _drop_deps("migrations", DB, "timescaledb-health", "timescaledb-superuser-login"),
            _drop_deps("backup", DB, "timescaledb-health"),
        ),
    ),
    "database-not-awaited": ("migrations-after-healthy-database", _remove("timescaledb-health")),
    "container-not-awaited": ("containers-awaited-healthy", _set(PROM, "wait", False)),
    "no-backup": ("production-has-backup", _remove("backup")),
    "migrations-before-backup": (
        "backup-before-migrations",
        # (the container the migrations wait for waits for the Backup too)
        _chain(_drop_deps("migrations", "backup"), _drop_deps(DB, "backup")),
    ),
    "exporter-before-migrations": (
        "readers-after-migrations",
        _drop_deps(EXPORTER, "migrations", "monitoring-exporter-role"),
    ),
    "benchmark-before-migrations": (
        "readers-after-migrations",
        # The program's Benchmark waits for the Verification (which waits for the migrations).
        _drop_deps("benchmark", "migrations", "verification"),
    ),
    "no-benchmark": ("production-has-benchmark", _remove("benchmark")),
    "no-deploy-gate": ("production-gates-the-checks", _remove("deploy-gate")),
    # (the Benchmark waits for the Verification: the gate still waits for that one)
    "gate-not-after-benchmark": (
        "production-gates-the-checks",
        _drop_deps("deploy-gate", "benchmark"),
    ),
    "pgdata-unprotected": ("pgdata-volume-protected", _option("timescaledb-data", protect=False)),
    "role-can-write": (
        "monitoring-roles-not-superuser",
        _set("monitoring-exporter-role", "member_of", ["pg_monitor", "pg_write_all_data"]),
    ),
    "exporter-as-superuser": (
        "monitoring-roles-not-superuser",
        _envs(
            EXPORTER,
            lambda e: [
                ("DATA_SOURCE_USER=postgres" if x.startswith("DATA_SOURCE_USER=") else x) for x in e
            ],
        ),
    ),
}
"""Mutations whose only effect is the noted policy's violation (exception: without its
ContainerHealth gate, nothing waits for the database container either)."""

ALSO = {"database-not-awaited": {"containers-awaited-healthy"}}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_each_rule_yields_exactly_its_violation(runs, packs, case):
    policy, mutate = MUTATIONS[case]
    run = runs["production"]
    resources = with_lifecycle(records(run), "production")
    mutate(resources)
    diagnostics = analyze(packs["production"], resources)
    assert violated(diagnostics) == {policy} | ALSO.get(case, set()), [
        d.message for d in diagnostics
    ]
    mine = [d for d in diagnostics if d.policy == policy]
    assert all(d.level == "mandatory" for d in mine)
    text = "\n".join(d.message for d in diagnostics)
    for secret in [*_secret_values(run), "plain-text-password-0001", "plain-text-0002"]:
        assert secret not in text
    for d in mine:
        # A message names the resource (or the stack-level gap) and says what to do.
        assert "Remediation:" in d.message
        if d.urn:
            target = d.urn.rsplit("::", 1)[-1]
            assert target in d.message, d.message


def test_every_policy_has_a_mutation():
    from ms5_policy.catalog import POLICIES

    assert {p.name for p in POLICIES} == {policy for policy, _ in MUTATIONS.values()}


def test_opt_in_label_allows_a_non_loopback_bind(runs, packs):
    resources = with_lifecycle(records(runs["production"]), "production")
    grafana = _by_name(resources, GRAFANA)
    grafana.set("ports", [{"internal": 3000, "external": 3000, "ip": "0.0.0.0"}])
    grafana.set(
        "labels",
        [*grafana.inputs["labels"], {"label": "ms5.allow-non-loopback-bind", "value": "true"}],
    )
    assert analyze(packs["production"], resources) == []


# ------------------------------------------------------------------------------------------------
# Enforcement and config
# ------------------------------------------------------------------------------------------------


def test_staging_violations_are_advisory_and_config_can_make_them_mandatory(runs, packs):
    resources = records(runs["staging"])
    _by_name(resources, "monitoring-grafana-image").set("name", "grafana/grafana:latest")
    [diagnostic] = analyze(packs["staging"], resources)
    assert (diagnostic.policy, diagnostic.level) == ("images-pinned", "advisory")
    assert "monitoring-grafana-image" in diagnostic.message
    [diagnostic] = analyze(packs["staging"], resources, {"images-pinned": "mandatory"})
    assert diagnostic.level == "mandatory"
    assert analyze(packs["staging"], resources, {"all": "disabled"}) == []


def test_production_config_overrides_enforcement_and_thresholds(runs, packs):
    resources = with_lifecycle(records(runs["production"]), "production")
    _by_name(resources, "backup").set("keepCount", 3)
    [diagnostic] = analyze(packs["production"], resources)
    assert diagnostic.policy == "backups-verified-and-retained" and diagnostic.level == "mandatory"
    assert "below 7" in diagnostic.message
    relaxed = {"backups-verified-and-retained": {"enforcementLevel": "advisory", "minKeepCount": 7}}
    [diagnostic] = analyze(packs["production"], resources, relaxed)
    assert diagnostic.level == "advisory"
    assert (
        analyze(
            packs["production"], resources, {"backups-verified-and-retained": {"minKeepCount": 3}}
        )
        == []
    )


# ------------------------------------------------------------------------------------------------
# Preview: unknown values are reported, never passed silently
# ------------------------------------------------------------------------------------------------


def test_unknown_values_are_named_not_passed(runs, packs):
    resources = with_lifecycle(records(runs["production"]), "production")
    _by_name(resources, GRAFANA).set("image", UNKNOWN_STRING)
    backup = _by_name(resources, "backup")
    backup.set("verify", UNKNOWN_STRING)
    backup.set("keepCount", 2)
    diagnostics = analyze(packs["production"], resources)
    by_policy: dict[str, list[Diagnostic]] = {}
    for d in diagnostics:
        by_policy.setdefault(d.policy, []).append(d)
    assert set(by_policy) == {"images-pinned", "backups-verified-and-retained"}
    [image] = by_policy["images-pinned"]
    assert image.level == "advisory" and "during preview" in image.message
    assert f"{GRAFANA} (Container): image" in image.message
    levels = sorted((d.level, d.message) for d in by_policy["backups-verified-and-retained"])
    # keepCount is known and wrong: a real, mandatory violation; verify is named as unchecked.
    assert [lvl for lvl, _ in levels] == ["advisory", "mandatory"]
    assert "backup (Backup): verify" in levels[0][1] and "keepCount" in levels[1][1]


# ------------------------------------------------------------------------------------------------
# What the analyzer protocol does not carry, checked on the program's own registrations
# ------------------------------------------------------------------------------------------------

_SECRET_KEY = re.compile(r"(password|dsn|secret|token|passphrase)", re.I)


@pytest.mark.parametrize("stack", STACKS)
def test_password_like_inputs_are_secrets(runs, stack):
    """The Python policy SDK strips the engine's secret markers before rules run, so this is
    where secretness is checked: every password-like input and every secret-file upload."""
    run = runs[stack]
    checked = 0
    for reg in run.registrations.values():
        for key in reg.inputs:
            if _SECRET_KEY.search(key) and not key.startswith("__"):
                assert reg.is_secret(key), (reg.urn, key)
                checked += 1
        for upload in reg.inputs.get("uploads") or []:
            if re.search(r"(secret|password)", str(upload.get("file")), re.I):
                assert reg.is_secret("uploads") and SECRET_SIG in json.dumps(upload["content"]), (
                    reg.urn
                )
                checked += 1
    assert checked >= 8


def test_production_pgdata_volume_is_retained_on_delete(runs):
    """retainOnDelete is not in the analyzer protocol: the volume pgdata-volume-protected
    checks is also retain_on_delete in the program's own registration."""
    run = runs["production"]
    db = run.by_name(DB)
    [pgdata] = [v for v in db.plain("volumes") if v["containerPath"] == "/var/lib/postgresql/data"]
    [volume] = [r for r in run.registrations.values() if r.plain("name") == pgdata["volumeName"]]
    assert volume.protect and volume.retain_on_delete


def test_migrations_declare_policies_for_every_hypertable():
    from ms5_components.migrations import repository_migrations_dir
    from ms5_policy.lifecycle import hypertable_policies

    sql = {p.name: p.read_text() for p in sorted(repository_migrations_dir().glob("V*.sql"))}
    tables = hypertable_policies(sql)
    assert set(tables) == {
        "ms5.machine_metrics",
        "ms5.production_counts",
        "ms5.oee_measurements",
        "ms5.downtime_events",
        "ms5.energy_readings",
    }
    assert all(t["compression"] and t["retention"] for t in tables.values()), tables
    # Commented-out calls do not count; CREATE TABLE ... WITH (tsdb.hypertable) does.
    extra = {
        "V0100__x.sql": "CREATE TABLE ms5.t (time timestamptz) WITH (tsdb.hypertable, tsdb.partition_column='time');\n"
        "-- SELECT ms5_admin.set_retention('ms5.t', INTERVAL '1 day');\n"
    }
    assert hypertable_policies(extra) == {
        "ms5.t": {"file": "V0100__x.sql", "compression": False, "retention": False}
    }


def test_readme_rule_table_matches_the_catalog():
    from harness import ROOT
    from ms5_policy.catalog import POLICIES

    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", readme, re.M)
    assert [r[0] for r in rows] == [p.name for p in POLICIES]
    for (name, production, staging, protects), spec in zip(rows, POLICIES, strict=True):
        assert protects.strip() == spec.protects, name
        assert production.startswith("mandatory"), name
        assert staging.strip().startswith(("advisory", "not applied")), name


def test_program_opt_in_to_a_non_loopback_bind_passes_and_the_label_is_what_counts(packs):
    """ms5:allowNonLoopbackBind makes the program label every publishing container; the pack
    accepts the wildcard bind because of that label, and only because of it."""
    from ms5_components.docker_common import NON_LOOPBACK_BIND_LABEL
    from ms5_policy.containers import NON_LOOPBACK_LABEL

    assert NON_LOOPBACK_BIND_LABEL == NON_LOOPBACK_LABEL
    opt_in = {"ms5:bindAddress": "0.0.0.0", "ms5:allowNonLoopbackBind": True}
    resources = records(run_program("staging", overrides_for("staging", opt_in)))
    published = [r for r in resources if r.inputs.get("ports")]
    assert published and all(p["ip"] == "0.0.0.0" for r in published for p in r.inputs["ports"])
    assert analyze(packs["staging"], resources) == []
    grafana = _by_name(resources, GRAFANA)
    grafana.set("labels", [x for x in grafana.inputs["labels"] if x["label"] != NON_LOOPBACK_LABEL])
    [diagnostic] = analyze(packs["staging"], resources)
    assert (diagnostic.policy, diagnostic.urn) == ("ports-bound-to-loopback", grafana.urn)
