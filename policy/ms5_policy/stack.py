"""Stack rules: relations between resources (pure functions over the whole stack).

``AnalyzeStack`` receives each resource's outputs (at preview, of a resource still to be created:
its inputs) and its dependencies, i.e. the ``dependsOn`` and input edges of the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from ms5_policy.model import (
    BACKUP,
    BENCHMARK,
    CONTAINER,
    CONTAINER_HEALTH,
    DEPLOY_GATE,
    MIGRATION_SET,
    MONITORING_ROLE,
    VERIFICATION,
    VOLUME,
    Context,
    Finding,
    Resource,
    Unchecked,
    Unknown,
    Violation,
    env_map,
    is_database,
    is_exporter,
    is_grafana,
    pgdata_path,
    prop,
    strings,
    unknown_envs,
    uploads,
)


class Graph:
    """Who waits for whom: dependencies, transitively; a dependency on a component resource is
    one on each of its children."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        self.by_urn = {r.urn: r for r in resources}

    def _ancestors(self, urn: str) -> Iterable[str]:
        reg = self.by_urn.get(urn)
        while reg is not None and reg.parent:
            yield reg.parent
            reg = self.by_urn.get(reg.parent)

    def waits_for(self, dependant: Resource, dependency: Resource) -> bool:
        """Whether ``dependant`` is created only after ``dependency``."""
        targets = {dependency.urn, *self._ancestors(dependency.urn)}
        seen: set[str] = set()
        todo = list(dependant.dependencies)
        while todo:
            urn = todo.pop()
            if urn in seen:
                continue
            seen.add(urn)
            if urn in targets:
                return True
            reg = self.by_urn.get(urn)
            if reg is not None:
                todo.extend(reg.dependencies)
        return False


def _of_type(resources: Sequence[Resource], type_: str) -> list[Resource]:
    return [r for r in resources if r.type == type_]


def _awaited(graph: Graph, container: Resource, gates: Sequence[Resource]) -> bool | None:
    """Whether `pulumi up` waits until ``container`` is healthy: it is created with wait=true,
    or a ContainerHealth gate depends on it. None when ``wait`` is unknown and no gate waits."""
    if any(graph.waits_for(gate, container) for gate in gates):
        return True
    wait = container.props.get("wait")
    if isinstance(wait, Unknown):
        return None
    return wait is True


def containers_awaited_healthy(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """`pulumi up` waits until every container is healthy: wait=true, or a ContainerHealth
    resource that depends on the container."""
    graph = Graph(resources)
    gates = _of_type(resources, CONTAINER_HEALTH)
    out: list[Finding] = []
    for container in _of_type(resources, CONTAINER):
        awaited = _awaited(graph, container, gates)
        if awaited is None:
            out.append(Unchecked(f"{container.label}: wait"))
        elif not awaited:
            out.append(
                Violation(
                    f"{container.label}: nothing waits for it to become healthy; set wait=true "
                    "or add a ContainerHealth resource that depends on it.",
                    container.urn,
                )
            )
    return out


def migrations_after_healthy_database(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """Migrations run only after the database container is healthy: they depend on it, it has a
    health check, and it is created with wait=true or the migrations wait for a ContainerHealth
    gate on it."""
    graph = Graph(resources)
    databases = [r for r in resources if is_database(r)]
    gates = _of_type(resources, CONTAINER_HEALTH)
    out: list[Finding] = []
    for migrations in _of_type(resources, MIGRATION_SET):
        waited = [db for db in databases if graph.waits_for(migrations, db)]
        if not waited:
            out.append(
                Violation(
                    f"{migrations.label}: does not depend on the database container; add "
                    "depends_on=[database.healthy] so it runs after the server is healthy.",
                    migrations.urn,
                )
            )
            continue
        for db in waited:
            check = db.props.get("healthcheck")
            mine = [g for g in gates if graph.waits_for(migrations, g)]
            awaited = _awaited(graph, db, mine)
            if isinstance(check, Unknown) or awaited is None:
                out.append(Unchecked(f"{db.label}: healthcheck/wait"))
            elif not awaited or not (isinstance(check, Mapping) and strings(check.get("tests"))):
                out.append(
                    Violation(
                        f"{migrations.label}: runs after {db.label}, which is not known to be "
                        "healthy (needs a healthcheck, and wait=true or a ContainerHealth gate "
                        "the migrations depend on); fix the container or the dependency.",
                        migrations.urn,
                    )
                )
    return out


def production_has_backup(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """A production stack takes backups (a Backup resource)."""
    if not ctx.production or _of_type(resources, BACKUP):
        return []
    return [
        Violation(
            "no Backup resource in a production stack: add the backup component "
            f"({BACKUP}) so every deploy backs up before it migrates."
        )
    ]


def production_has_benchmark(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """A production stack benchmarks the deployed database (a Benchmark resource)."""
    if not ctx.production or _of_type(resources, BENCHMARK):
        return []
    return [
        Violation(
            "no Benchmark resource in a production stack: add the benchmark component "
            f"({BENCHMARK}) with thresholds and gate=true."
        )
    ]


def production_gates_the_checks(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """In production a DeployGate comes after every Verification and Benchmark, and nothing
    waits for it.

    The Verification and the Benchmark record a red result instead of failing; without a gate
    after them, a red production deploy would succeed. A resource that waits for the gate would
    not be created on a red deploy, and a stack output reading it would keep the red report out
    of the stack outputs."""
    checks = [r for r in resources if r.type in (VERIFICATION, BENCHMARK)]
    if not ctx.production or not checks:
        return []
    gates = _of_type(resources, DEPLOY_GATE)
    if not gates:
        return [
            Violation(
                "no DeployGate resource in a production stack with a Verification or Benchmark: "
                f"add the gate ({DEPLOY_GATE}) after both, or a red result deploys."
            )
        ]
    graph = Graph(resources)
    out: list[Finding] = [
        Violation(
            f"{c.label}: no DeployGate waits for it; add it to the gate's depends_on so its red "
            "result fails the deploy.",
            c.urn,
        )
        for c in checks
        if not any(graph.waits_for(g, c) for g in gates)
    ]
    out += [
        Violation(
            f"{r.label}: waits for the DeployGate; nothing may depend on the gate (it must be "
            "the last resource, so a red deploy still records every other resource).",
            r.urn,
        )
        for r in resources
        if r.type != DEPLOY_GATE and any(graph.waits_for(r, g) for g in gates)
    ]
    return out


def backup_before_migrations(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """In production the migrations run only after a backup (the MigrationSet depends on a
    Backup)."""
    backups = _of_type(resources, BACKUP)
    if not ctx.production or not backups:
        return []
    graph = Graph(resources)
    return [
        Violation(
            f"{m.label}: does not depend on a Backup; add depends_on=[backup] so a failed "
            "migration can always be rolled back to a backup taken just before it.",
            m.urn,
        )
        for m in _of_type(resources, MIGRATION_SET)
        if not any(graph.waits_for(m, b) for b in backups)
    ]


def readers_after_migrations(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """The exporter, the verification and the benchmark start after the migrations (they read
    the schema)."""
    readers = [r for r in resources if is_exporter(r) or r.type in (VERIFICATION, BENCHMARK)]
    if not readers:
        return []
    migration_sets = _of_type(resources, MIGRATION_SET)
    graph = Graph(resources)
    return [
        Violation(
            f"{r.label}: does not depend on the migrations; add depends_on=[migrations] so it "
            "never reads a schema that is not there yet.",
            r.urn,
        )
        for r in readers
        if not any(graph.waits_for(r, m) for m in migration_sets)
    ]


def pgdata_volume_protected(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """In production the volume holding PGDATA is a protected docker.Volume of this stack
    (retainOnDelete is not in the analyzer protocol: tests/unit/test_program.py checks it)."""
    if not ctx.production:
        return []
    volumes = {str(v.props.get("name")): v for v in _of_type(resources, VOLUME)}
    out: list[Finding] = []
    for db in (r for r in resources if is_database(r)):
        path = pgdata_path(db)
        for volume in strings(db.props.get("volumes")):
            if not isinstance(volume, Mapping) or volume.get("containerPath") != path:
                continue
            name = volume.get("volumeName")
            if isinstance(name, Unknown):
                out.append(Unchecked(f"{db.label}: the PGDATA volumeName"))
                continue
            if not name:
                continue  # not a named volume: pgdata-on-named-volume reports it
            managed = volumes.get(str(name))
            if managed is None:
                out.append(
                    Violation(
                        f"{db.label}: PGDATA is on a volume this stack does not manage, so "
                        "nothing protects it; create it as a docker.Volume with protect=True.",
                        db.urn,
                    )
                )
            elif not managed.options.protect:
                out.append(
                    Violation(
                        f"{managed.label}: holds PGDATA of {db.label} but is not protected; set "
                        "ms5:protectData true (protect + retain_on_delete).",
                        managed.urn,
                    )
                )
    return out


READ_ONLY_MEMBERSHIPS = frozenset(
    {
        "pg_monitor",
        "pg_read_all_stats",
        "pg_read_all_settings",
        "pg_stat_scan_tables",
        "pg_read_all_data",
    }
)


def _superusers(resources: Sequence[Resource]) -> set[str]:
    names = {"postgres"}
    for db in (r for r in resources if is_database(r)):
        user = env_map(db.props).get("POSTGRES_USER")
        if isinstance(user, str) and user:
            names.add(user)
    return names


def _grafana_db_users(grafana: Resource) -> list[Any]:
    users: list[Any] = []
    for upload in uploads(grafana.props):
        if "provisioning/datasources" not in str(upload.get("file")):
            continue
        content = upload.get("content")
        if isinstance(content, Unknown):
            users.append(content)
            continue
        try:
            data = yaml.safe_load(str(content)) or {}
        except yaml.YAMLError:
            continue
        for source in data.get("datasources") or [] if isinstance(data, Mapping) else []:
            if isinstance(source, Mapping) and "postgres" in str(source.get("type", "")):
                users.append(source.get("user"))
    return users


def monitoring_roles_not_superuser(resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """The exporter and Grafana connect as read-only monitoring roles, never as a superuser."""
    superusers = _superusers(resources)
    out: list[Finding] = []
    roles: set[str] = set()
    for role in _of_type(resources, MONITORING_ROLE):
        name = role.props.get("role")
        members = prop(role.props, "memberOf", "member_of")
        if isinstance(name, Unknown) or isinstance(members, Unknown):
            out.append(Unchecked(f"{role.label}: role/member_of"))
            continue
        roles.add(str(name))
        if str(name) in superusers:
            out.append(
                Violation(
                    f"{role.label}: role is the database superuser's name; give the monitoring "
                    "role its own name.",
                    role.urn,
                )
            )
        extra = sorted({str(m) for m in strings(members)} - READ_ONLY_MEMBERSHIPS)
        if extra:
            out.append(
                Violation(
                    f"{role.label}: member_of grants {', '.join(extra)}; monitoring roles get "
                    f"only read-only predefined roles ({', '.join(sorted(READ_ONLY_MEMBERSHIPS))}).",
                    role.urn,
                )
            )
    clients: list[tuple[Resource, str, Any]] = []
    for r in resources:
        if is_exporter(r):
            if unknown_envs(r.props):
                out.append(Unchecked(f"{r.label}: envs (DATA_SOURCE_USER)"))
            clients.append((r, "DATA_SOURCE_USER", env_map(r.props).get("DATA_SOURCE_USER")))
        elif is_grafana(r):
            clients.extend((r, "the PostgreSQL datasource user", u) for u in _grafana_db_users(r))
    for client, what, user in clients:
        if isinstance(user, Unknown):
            out.append(Unchecked(f"{client.label}: {what}"))
        elif user is None and what == "DATA_SOURCE_USER":
            continue  # the exporter may carry its user in DATA_SOURCE_NAME (a secret file)
        elif str(user) in superusers or str(user) not in roles:
            out.append(
                Violation(
                    f"{client.label}: {what} is not one of the stack's MonitoringRole roles (or "
                    "is a superuser); connect as the read-only monitoring role.",
                    client.urn,
                )
            )
    return out
