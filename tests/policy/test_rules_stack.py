"""The stack rules (ms5_policy/stack.py) called directly over small stacks built in the test:
each rule's findings, compared whole (message, resource), for the stacks that pass and fail it."""

from __future__ import annotations

import pytest

from ms5_policy import stack
from ms5_policy.model import (
    BACKUP,
    BENCHMARK,
    CONTAINER,
    CONTAINER_HEALTH,
    DEPLOY_GATE,
    MIGRATION_SET,
    MONITORING_ROLE,
    UNKNOWN,
    VERIFICATION,
    VOLUME,
    Context,
    Options,
    Resource,
    Unchecked,
    Violation,
)

PROD, STAGING = Context(tier="production"), Context(tier="staging")
CHECK = {"tests": ["CMD", "pg_isready"]}


def _r(type_: str, name: str, *deps: str, parent: str = "", **props: object) -> Resource:
    return Resource(
        type=type_, name=name, urn=f"urn:{name}", props=props, dependencies=deps, parent=parent
    )


def _db(name: str = "db", *deps: str, **props: object) -> Resource:
    return _r(CONTAINER, name, *deps, **{"envs": ["POSTGRES_DB=ms5"], **props})


# ---- Graph --------------------------------------------------------------------------------------


def test_waits_for_follows_dependencies_transitively_and_through_parents():
    a = _r("t", "a")
    b = _r("t", "b", "urn:a")
    c = _r("t", "c", "urn:b", "urn:b")
    cycle = _r("t", "x", "urn:y")
    cycle2 = _r("t", "y", "urn:x")
    graph = stack.Graph([a, b, c, cycle, cycle2])
    assert graph.waits_for(c, a) and graph.waits_for(b, a) and graph.waits_for(c, b)
    assert not graph.waits_for(a, c) and not graph.waits_for(a, a)
    assert not graph.waits_for(cycle, a)  # a cycle ends
    assert graph.waits_for(cycle, cycle2)


def test_a_dependency_on_a_grandparent_component_counts_for_its_grandchildren():
    top = _r("ms5:x:Top", "top")
    mid = _r("ms5:x:Mid", "mid", parent="urn:top")
    leaf = _r(CONTAINER, "leaf", parent="urn:mid")
    reader = _r("t", "reader", "urn:top")
    via = _r("t", "via", "urn:reader")
    graph = stack.Graph([top, mid, leaf, reader, via])
    assert graph.waits_for(reader, leaf) and graph.waits_for(via, leaf)
    assert graph.waits_for(reader, mid)
    # a dependency on a child is not one on its parent
    child_reader = _r("t", "cr", "urn:leaf")
    assert not stack.Graph([top, mid, leaf, child_reader]).waits_for(child_reader, top)
    # an unregistered dependency is followed no further
    assert not stack.Graph([leaf, _r("t", "o", "urn:gone")]).waits_for(
        _r("t", "o", "urn:gone"), leaf
    )


def test_ancestors_stop_at_an_unregistered_parent():
    orphan = _r(CONTAINER, "orphan", parent="urn:missing")
    assert list(stack.Graph([orphan])._ancestors("urn:orphan")) == ["urn:missing"]
    assert list(stack.Graph([])._ancestors("urn:none")) == []


# ---- containers_awaited_healthy -----------------------------------------------------------------


def test_containers_awaited_healthy():
    waited = _r(CONTAINER, "waited", wait=True)
    gated = _r(CONTAINER, "gated", wait=False)
    gate = _r(CONTAINER_HEALTH, "gate", "urn:gated")
    unknown = _r(CONTAINER, "unknown", wait=UNKNOWN)
    unknown_gated = _r(CONTAINER, "ug", wait=UNKNOWN)
    gate2 = _r(CONTAINER_HEALTH, "gate2", "urn:ug")
    bare = _r(CONTAINER, "bare")
    truthy = _r(CONTAINER, "truthy", wait="true")
    other = _r("t", "other", wait=False)
    resources = [waited, gated, gate, unknown, unknown_gated, gate2, bare, truthy, other]
    message = (
        ": nothing waits for it to become healthy; set wait=true "
        "or add a ContainerHealth resource that depends on it."
    )
    assert stack.containers_awaited_healthy(resources, STAGING) == [
        Unchecked("unknown (Container): wait"),
        Violation("bare (Container)" + message, "urn:bare"),
        Violation("truthy (Container)" + message, "urn:truthy"),
    ]


# ---- migrations_after_healthy_database ----------------------------------------------------------


def test_migrations_after_a_waited_healthy_database_pass():
    db = _db(wait=True, healthcheck=CHECK)
    assert (
        stack.migrations_after_healthy_database([db, _r(MIGRATION_SET, "m", "urn:db")], PROD) == []
    )
    gated = _db(wait=False, healthcheck=CHECK)
    gate = _r(CONTAINER_HEALTH, "gate", "urn:db")
    m = _r(MIGRATION_SET, "m", "urn:gate")
    assert stack.migrations_after_healthy_database([gated, gate, m], PROD) == []


def test_migrations_that_do_not_depend_on_the_database_are_refused():
    db = _db(wait=True, healthcheck=CHECK)
    m = _r(MIGRATION_SET, "m")
    assert stack.migrations_after_healthy_database([db, m, _r("t", "x")], PROD) == [
        Violation(
            "m (MigrationSet): does not depend on the database container; add "
            "depends_on=[database.healthy] so it runs after the server is healthy.",
            "urn:m",
        )
    ]


NOT_HEALTHY = (
    "m (MigrationSet): runs after db (Container), which is not known to be "
    "healthy (needs a healthcheck, and wait=true or a ContainerHealth gate "
    "the migrations depend on); fix the container or the dependency."
)


@pytest.mark.parametrize(
    "props",
    [
        {"wait": False, "healthcheck": CHECK},  # nothing waits
        {"wait": True},  # no health check
        {"wait": True, "healthcheck": {"tests": []}},
        {"wait": True, "healthcheck": ["CMD"]},  # not a mapping
    ],
)
def test_migrations_after_a_database_not_known_healthy_are_refused(props):
    db = _db(**props)
    m = _r(MIGRATION_SET, "m", "urn:db")
    assert stack.migrations_after_healthy_database([db, m], PROD) == [
        Violation(NOT_HEALTHY, "urn:m")
    ]


def test_a_gate_the_migrations_do_not_wait_for_does_not_count():
    db = _db(wait=False, healthcheck=CHECK)
    gate = _r(CONTAINER_HEALTH, "gate", "urn:db")
    m = _r(MIGRATION_SET, "m", "urn:db")
    assert stack.migrations_after_healthy_database([db, gate, m], PROD) == [
        Violation(NOT_HEALTHY, "urn:m")
    ]


@pytest.mark.parametrize(
    "props", [{"wait": True, "healthcheck": UNKNOWN}, {"wait": UNKNOWN, "healthcheck": CHECK}]
)
def test_unknown_health_check_or_wait_is_unchecked(props):
    db = _db(**props)
    m = _r(MIGRATION_SET, "m", "urn:db")
    assert stack.migrations_after_healthy_database([db, m], PROD) == [
        Unchecked("db (Container): healthcheck/wait")
    ]


def test_every_waited_database_is_judged():
    good = _db("good", wait=True, healthcheck=CHECK)
    bad = _db("db", wait=True)
    m = _r(MIGRATION_SET, "m", "urn:good", "urn:db")
    assert stack.migrations_after_healthy_database([good, bad, m], PROD) == [
        Violation(NOT_HEALTHY, "urn:m")
    ]


# ---- production_has_backup / production_has_benchmark -------------------------------------------


def test_production_needs_a_backup_and_a_benchmark():
    assert stack.production_has_backup([], STAGING) == []
    assert stack.production_has_benchmark([], STAGING) == []
    assert stack.production_has_backup([_r(BACKUP, "b")], PROD) == []
    assert stack.production_has_benchmark([_r(BENCHMARK, "b")], PROD) == []
    assert stack.production_has_backup([_r(BENCHMARK, "b")], PROD) == [
        Violation(
            "no Backup resource in a production stack: add the backup component "
            f"({BACKUP}) so every deploy backs up before it migrates."
        )
    ]
    assert stack.production_has_benchmark([_r(BACKUP, "b")], PROD) == [
        Violation(
            "no Benchmark resource in a production stack: add the benchmark component "
            f"({BENCHMARK}) with thresholds and gate=true."
        )
    ]


# ---- production_gates_the_checks ----------------------------------------------------------------


def test_production_gates_the_checks():
    verification = _r(VERIFICATION, "verification")
    benchmark = _r(BENCHMARK, "benchmark", "urn:verification")
    gate = _r(DEPLOY_GATE, "deploy-gate", "urn:verification", "urn:benchmark")
    assert stack.production_gates_the_checks([verification, benchmark, gate], PROD) == []
    # Through the Benchmark, the gate waits for the Verification too.
    later = _r(DEPLOY_GATE, "deploy-gate", "urn:benchmark")
    assert stack.production_gates_the_checks([verification, benchmark, later], PROD) == []
    assert stack.production_gates_the_checks([verification, benchmark], STAGING) == []
    assert stack.production_gates_the_checks([_r(BACKUP, "b")], PROD) == []
    assert stack.production_gates_the_checks([verification, benchmark], PROD) == [
        Violation(
            "no DeployGate resource in a production stack with a Verification or Benchmark: "
            f"add the gate ({DEPLOY_GATE}) after both, or a red result deploys."
        )
    ]
    early = _r(DEPLOY_GATE, "deploy-gate", "urn:verification")
    assert stack.production_gates_the_checks([verification, benchmark, early], PROD) == [
        Violation(
            f"{benchmark.label}: no DeployGate waits for it; add it to the gate's depends_on so "
            "its red result fails the deploy.",
            "urn:benchmark",
        )
    ]
    after_gate = _r(CONTAINER, "late", "urn:deploy-gate")
    assert stack.production_gates_the_checks([verification, benchmark, gate, after_gate], PROD) == [
        Violation(
            f"{after_gate.label}: waits for the DeployGate; nothing may depend on the gate (it "
            "must be the last resource, so a red deploy still records every other resource).",
            "urn:late",
        )
    ]


# ---- backup_before_migrations -------------------------------------------------------------------


def test_backup_before_migrations():
    backup = _r(BACKUP, "backup")
    after = _r(MIGRATION_SET, "after", "urn:backup")
    before = _r(MIGRATION_SET, "before")
    resources = [backup, after, before]
    assert stack.backup_before_migrations(resources, STAGING) == []
    assert stack.backup_before_migrations([after, before], PROD) == []  # production_has_backup
    assert stack.backup_before_migrations(resources, PROD) == [
        Violation(
            "before (MigrationSet): does not depend on a Backup; add depends_on=[backup] so a "
            "failed migration can always be rolled back to a backup taken just before it.",
            "urn:before",
        )
    ]
    second = _r(BACKUP, "second")
    late = _r(MIGRATION_SET, "late", "urn:second")
    assert stack.backup_before_migrations([backup, second, late], PROD) == []


# ---- readers_after_migrations -------------------------------------------------------------------


def test_readers_after_migrations():
    m = _r(MIGRATION_SET, "m")
    exporter = _r(CONTAINER, "exporter", envs=["DATA_SOURCE_URI=x"])
    verification = _r(VERIFICATION, "verify", "urn:m")
    benchmark = _r(BENCHMARK, "bench")
    plain = _r(CONTAINER, "plain")
    message = (
        ": does not depend on the migrations; add depends_on=[migrations] so it "
        "never reads a schema that is not there yet."
    )
    assert stack.readers_after_migrations([m, exporter, verification, benchmark, plain], PROD) == [
        Violation("exporter (Container)" + message, "urn:exporter"),
        Violation("bench (Benchmark)" + message, "urn:bench"),
    ]
    assert stack.readers_after_migrations([m, plain], PROD) == []
    m2 = _r(MIGRATION_SET, "m2")
    late = _r(BENCHMARK, "late", "urn:m2")
    assert stack.readers_after_migrations([m, m2, late], PROD) == []


# ---- pgdata_volume_protected --------------------------------------------------------------------


def _pg(volume_name: object, path: str = "/var/lib/postgresql/data", **props: object) -> Resource:
    return _db(volumes=[{"containerPath": path, "volumeName": volume_name}], **props)


def _volume(name: str, protect: bool) -> Resource:
    return Resource(
        type=VOLUME,
        name=f"vol-{name}",
        urn=f"urn:vol-{name}",
        props={"name": name},
        options=Options(protect=protect),
    )


def test_pgdata_volume_protected():
    protected = _volume("pgdata", True)
    assert stack.pgdata_volume_protected([_pg("pgdata"), protected], PROD) == []
    assert stack.pgdata_volume_protected([_pg("pgdata")], STAGING) == []
    assert stack.pgdata_volume_protected([_pg("pgdata"), _volume("pgdata", False)], PROD) == [
        Violation(
            "vol-pgdata (Volume): holds PGDATA of db (Container) but is not protected; set "
            "ms5:protectData true (protect + retain_on_delete).",
            "urn:vol-pgdata",
        )
    ]
    assert stack.pgdata_volume_protected([_pg("elsewhere"), protected], PROD) == [
        Violation(
            "db (Container): PGDATA is on a volume this stack does not manage, so "
            "nothing protects it; create it as a docker.Volume with protect=True.",
            "urn:db",
        )
    ]
    assert stack.pgdata_volume_protected([_pg(UNKNOWN)], PROD) == [
        Unchecked("db (Container): the PGDATA volumeName")
    ]
    assert stack.pgdata_volume_protected([_pg("")], PROD) == []
    assert stack.pgdata_volume_protected([_pg(None)], PROD) == []


def test_pgdata_volume_follows_pgdata_and_skips_other_mounts():
    custom = _db(
        envs=["POSTGRES_DB=ms5", "PGDATA=/data/pg"],
        volumes=[
            "not a mapping",
            {"containerPath": "/var/lib/postgresql/data", "volumeName": "unmanaged"},
            {"containerPath": "/data/pg", "volumeName": "pgdata"},
            {"containerPath": "/other", "volumeName": "unmanaged2"},
        ],
    )
    assert stack.pgdata_volume_protected([custom, _volume("pgdata", True)], PROD) == []
    # a volume of another container, and a container that is not a database, are not judged
    app = _r(
        CONTAINER, "app", volumes=[{"containerPath": "/var/lib/postgresql/data", "volumeName": "x"}]
    )
    assert stack.pgdata_volume_protected([app, _pg("unmanaged-but-later", path="/x")], PROD) == []
    # every database and every PGDATA mount is judged
    two = _db(
        volumes=[
            {"containerPath": "/var/lib/postgresql/data", "volumeName": UNKNOWN},
            {"containerPath": "/var/lib/postgresql/data", "volumeName": "gone"},
        ]
    )
    assert len(stack.pgdata_volume_protected([two, _pg("gone2")], PROD)) == 3


# ---- monitoring_roles_not_superuser -------------------------------------------------------------


def _role(name: str, role: object, members: object, key: str = "memberOf") -> Resource:
    return _r(MONITORING_ROLE, name, role=role, **{key: members})


def _grafana(*uploads: object) -> Resource:
    return _r(CONTAINER, "grafana", envs=["GF_SECURITY_ADMIN_USER=admin"], uploads=list(uploads))


def _datasource(user: str, type_: str = "grafana-postgresql-datasource") -> dict[str, str]:
    return {
        "file": "/etc/grafana/provisioning/datasources/ms5.yaml",
        "content": f"apiVersion: 1\ndatasources:\n  - type: {type_}\n    user: {user}\n",
    }


SUPERUSER_ROLE = ": role is the database superuser's name; give the monitoring role its own name."
NOT_A_ROLE = (
    " is not one of the stack's MonitoringRole roles (or is a superuser); connect as the "
    "read-only monitoring role."
)


def test_monitoring_roles_pass_with_read_only_roles():
    resources = [
        _db(envs=["POSTGRES_USER=admin"]),
        _role("exp-role", "ms5_exporter", ["pg_monitor", "pg_read_all_stats"]),
        _role("gf-role", "ms5_grafana", ("pg_read_all_data",), key="member_of"),
        _r(CONTAINER, "exporter", envs=["DATA_SOURCE_USER=ms5_exporter"]),
        _r(CONTAINER, "exporter2", envs=["DATA_SOURCE_NAME=x"]),
        _grafana(_datasource("ms5_grafana"), {"file": "/etc/grafana/grafana.ini", "content": "x"}),
    ]
    assert stack.monitoring_roles_not_superuser(resources, PROD) == []


def test_monitoring_roles_are_refused_when_superusers_or_writers():
    resources = [
        _db(envs=["POSTGRES_USER=admin"]),
        _db("empty-user", envs=["POSTGRES_USER="]),
        _role("r1", "admin", ["pg_monitor"]),
        _role("r2", "postgres", []),
        _role("r3", "ms5_x", ["pg_write_all_data", "pg_monitor", "app_owner"]),
        _role("r4", UNKNOWN, []),
        _role("r5", "ms5_y", UNKNOWN),
    ]
    assert stack.monitoring_roles_not_superuser(resources, PROD) == [
        Violation("r1 (MonitoringRole)" + SUPERUSER_ROLE, "urn:r1"),
        Violation("r2 (MonitoringRole)" + SUPERUSER_ROLE, "urn:r2"),
        Violation(
            "r3 (MonitoringRole): member_of grants app_owner, pg_write_all_data; monitoring "
            "roles get only read-only predefined roles (pg_monitor, pg_read_all_data, "
            "pg_read_all_settings, pg_read_all_stats, pg_stat_scan_tables).",
            "urn:r3",
        ),
        Unchecked("r4 (MonitoringRole): role/member_of"),
        Unchecked("r5 (MonitoringRole): role/member_of"),
    ]


def test_clients_must_connect_as_a_monitoring_role():
    resources = [
        _db(envs=["POSTGRES_USER=admin"]),
        _role("r", "ms5_exporter", ["pg_monitor"]),
        _r(CONTAINER, "exp-admin", envs=["DATA_SOURCE_USER=admin"]),
        _r(CONTAINER, "exp-postgres", envs=["DATA_SOURCE_USER=postgres"]),
        _r(CONTAINER, "exp-other", envs=["DATA_SOURCE_USER=someone"]),
        _r(CONTAINER, "exp-unknown", envs=["DATA_SOURCE_NAME=x", UNKNOWN]),
        _grafana(
            _datasource("admin"),
            _datasource("ms5_exporter", type_="prometheus"),  # not a PostgreSQL datasource
            {"file": "/etc/grafana/provisioning/datasources/u.yaml", "content": UNKNOWN},
            {"file": "/etc/grafana/provisioning/datasources/bad.yaml", "content": "a: [b"},
            {"file": "/etc/grafana/provisioning/datasources/list.yaml", "content": "- 1\n"},
            {"file": "/etc/grafana/provisioning/datasources/e.yaml", "content": ""},
            {
                "file": "/etc/grafana/provisioning/datasources/n.yaml",
                "content": "datasources:\n  - x\n  - type: postgres\n",
            },
        ),
    ]
    ds = "the PostgreSQL datasource user"
    # the unknown envs are reported while the clients are collected, before any is judged
    assert stack.monitoring_roles_not_superuser(resources, PROD) == [
        Unchecked("exp-unknown (Container): envs (DATA_SOURCE_USER)"),
        Violation("exp-admin (Container): DATA_SOURCE_USER" + NOT_A_ROLE, "urn:exp-admin"),
        Violation("exp-postgres (Container): DATA_SOURCE_USER" + NOT_A_ROLE, "urn:exp-postgres"),
        Violation("exp-other (Container): DATA_SOURCE_USER" + NOT_A_ROLE, "urn:exp-other"),
        Violation(f"grafana (Container): {ds}" + NOT_A_ROLE, "urn:grafana"),
        Unchecked(f"grafana (Container): {ds}"),
        Violation(f"grafana (Container): {ds}" + NOT_A_ROLE, "urn:grafana"),
    ]


def test_a_superuser_named_as_a_monitoring_role_is_still_refused_for_clients():
    resources = [
        _role("r", "postgres", ["pg_monitor"]),
        _r(CONTAINER, "exporter", envs=["DATA_SOURCE_USER=postgres"]),
    ]
    assert stack.monitoring_roles_not_superuser(resources, PROD) == [
        Violation("r (MonitoringRole)" + SUPERUSER_ROLE, "urn:r"),
        Violation("exporter (Container): DATA_SOURCE_USER" + NOT_A_ROLE, "urn:exporter"),
    ]


# ---- walks that must go on past a skipped entry -------------------------------------------------


def test_a_dependency_seen_twice_does_not_end_the_walk():
    a = _r("t", "a")
    b = _r("t", "b")
    dependant = _r("t", "d", "urn:a", "urn:b", "urn:b")
    assert stack.Graph([a, b, dependant]).waits_for(dependant, a)


def test_every_migration_set_is_judged_after_one_without_the_database():
    db = _db(wait=True)
    lost = _r(MIGRATION_SET, "lost")
    m = _r(MIGRATION_SET, "m", "urn:db")
    findings = stack.migrations_after_healthy_database([db, lost, m], PROD)
    assert findings[1:] == [Violation(NOT_HEALTHY, "urn:m")] and len(findings) == 2


def test_pgdata_mounts_after_a_skipped_one_are_judged():
    other_first = _db(
        volumes=[
            {"containerPath": "/backups", "volumeName": "b"},
            {"containerPath": "/var/lib/postgresql/data", "volumeName": "gone"},
        ]
    )
    anonymous_first = _db(
        volumes=[
            {"containerPath": "/var/lib/postgresql/data", "volumeName": ""},
            {"containerPath": "/var/lib/postgresql/data", "volumeName": "gone"},
        ]
    )
    for db in (other_first, anonymous_first):
        assert [type(f) for f in stack.pgdata_volume_protected([db], PROD)] == [Violation]


def test_member_of_in_snake_case_is_judged_too():
    role = _role("r", "ms5_x", ["pg_write_all_data"], key="member_of")
    assert stack.monitoring_roles_not_superuser([role], PROD) == [
        Violation(
            "r (MonitoringRole): member_of grants pg_write_all_data; monitoring roles get only "
            "read-only predefined roles (pg_monitor, pg_read_all_data, pg_read_all_settings, "
            "pg_read_all_stats, pg_stat_scan_tables).",
            "urn:r",
        )
    ]


def test_an_empty_postgres_user_is_no_superuser_name():
    resources = [_db(envs=["POSTGRES_USER="]), _role("r", "", ["pg_monitor"])]
    assert stack.monitoring_roles_not_superuser(resources, PROD) == []


def test_grafana_datasources_after_other_uploads_are_read():
    resources = [
        _role("r", "ms5_grafana", ["pg_monitor"]),
        _grafana({"file": "/etc/grafana/grafana.ini", "content": "x"}, _datasource("admin")),
    ]
    assert stack.monitoring_roles_not_superuser(resources, PROD) == [
        Violation("grafana (Container): the PostgreSQL datasource user" + NOT_A_ROLE, "urn:grafana")
    ]
