"""The pack's policies as data: name, kind, rule, remediation and config.

The description of each policy is the first paragraph of its rule's docstring (one sentence).
Every policy is mandatory in production and advisory in staging unless the policy pack config
(``pulumi preview --policy-pack-config``) sets another enforcement level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ms5_policy import containers, lifecycle, stack
from ms5_policy.model import ResourceRule, StackRule


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    """One policy of the pack."""

    name: str
    """kebab-case id (what ``--policy-pack-config`` keys and violations name)."""
    kind: Literal["resource", "stack"]
    """Resource policies run in ``Analyze`` (inputs, per resource), stack policies in
    ``AnalyzeStack`` (outputs and dependencies of every resource)."""
    rule: ResourceRule | StackRule
    remediation: str
    protects: str
    """What the rule protects against (the README's rule table)."""
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """JSON schema of the policy's config properties."""

    @property
    def description(self) -> str:
        doc = (self.rule.__doc__ or self.name).strip()
        return " ".join(doc.split("\n\n", 1)[0].split())


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="images-pinned",
        kind="resource",
        rule=containers.images_pinned,
        remediation="Run `./ms5 pin-images <stack>` and commit the digests it writes.",
        protects="an image that changes under the same tag (or `latest`) between review and deploy",
        config={"requireDigest": {"type": "boolean", "default": True}},
    ),
    PolicySpec(
        name="no-privileged-containers",
        kind="resource",
        rule=containers.no_privileged_containers,
        remediation="Remove privileged and the broad capabilities; add only narrow ones.",
        protects="a container escape that becomes root on the Docker host",
    ),
    PolicySpec(
        name="no-host-namespaces",
        kind="resource",
        rule=containers.no_host_namespaces,
        remediation="Drop networkMode/pidMode/ipcMode host; use the stack network.",
        protects="containers seeing or touching the host's processes, network and IPC",
    ),
    PolicySpec(
        name="no-sensitive-host-mounts",
        kind="resource",
        rule=containers.no_sensitive_host_mounts,
        remediation="Mount named docker.Volume resources instead of host paths.",
        protects="a container controlling Docker (socket) or reading/writing host system files",
    ),
    PolicySpec(
        name="no-new-privileges",
        kind="resource",
        rule=containers.no_new_privileges,
        remediation='Add "no-new-privileges:true" to securityOpts.',
        protects="privilege escalation through setuid binaries inside a container",
    ),
    PolicySpec(
        name="resource-limits",
        kind="resource",
        rule=containers.resource_limits,
        remediation="Set memory and cpus on every container and shmSize on the database.",
        protects="one container starving the host (and the database) of memory or CPU",
    ),
    PolicySpec(
        name="health-checks",
        kind="resource",
        rule=containers.health_checks,
        remediation="Add healthcheck.tests that pass only when the service answers.",
        protects="`pulumi up` reporting success for a service that does not answer",
    ),
    PolicySpec(
        name="restart-policy",
        kind="resource",
        rule=containers.restart_policy,
        remediation="Set restart to unless-stopped.",
        protects="a crashed service staying down until someone notices",
    ),
    PolicySpec(
        name="log-rotation",
        kind="resource",
        rule=containers.log_rotation,
        remediation="Set logDriver json-file with logOpts max-size and max-file.",
        protects="container logs filling the Docker host's disk",
    ),
    PolicySpec(
        name="ports-bound-to-loopback",
        kind="resource",
        rule=containers.ports_bound_to_loopback,
        remediation="Bind ports to 127.0.0.1, or opt in with ms5:allowNonLoopbackBind.",
        protects="the database and monitoring UIs reachable from the network by accident",
    ),
    PolicySpec(
        name="pgdata-on-named-volume",
        kind="resource",
        rule=containers.pgdata_on_named_volume,
        remediation="Mount a named docker.Volume at the PGDATA path.",
        protects="data lost with the container (anonymous volume) or shared (bind mount)",
    ),
    PolicySpec(
        name="database-delete-before-replace",
        kind="resource",
        rule=containers.database_delete_before_replace,
        remediation="Set ResourceOptions(delete_before_replace=True) on the database container.",
        protects="two PostgreSQL servers on one data directory during a replacement",
    ),
    PolicySpec(
        name="secrets-not-in-plain-sight",
        kind="resource",
        rule=containers.secrets_not_in_plain_sight,
        remediation="Upload secrets as files (*_FILE variables); list uploads in additionalSecretOutputs.",
        protects="passwords in `docker inspect`, `ps`, logs or unencrypted state",
    ),
    PolicySpec(
        name="grafana-hardened",
        kind="resource",
        rule=containers.grafana_hardened,
        remediation="Upload a generated admin password; set anonymous access and sign-up false.",
        protects="Grafana with admin/admin, anonymous viewers or self sign-up",
    ),
    PolicySpec(
        name="prometheus-hardened",
        kind="resource",
        rule=containers.prometheus_hardened,
        remediation="Remove the admin/lifecycle flags; set retention time and size.",
        protects="remote deletion of metrics or shutdown; Prometheus filling the disk",
    ),
    PolicySpec(
        name="backups-verified-and-retained",
        kind="resource",
        rule=lifecycle.backups_verified_and_retained,
        remediation="Set verify=true, keepCount >= minKeepCount and, in production, mandatory=true.",
        protects="unrestorable backups, too few backups, a deploy that migrates after a failed backup",
        config={"minKeepCount": {"type": "integer", "minimum": 1}},
    ),
    PolicySpec(
        name="benchmark-thresholds",
        kind="resource",
        rule=lifecycle.benchmark_thresholds,
        remediation="Set the three thresholds and gate=true on the Benchmark.",
        protects="a slower or less compressed database going unnoticed after a deploy",
    ),
    PolicySpec(
        name="hypertables-have-policies",
        kind="resource",
        rule=lifecycle.hypertables_have_policies,
        remediation="Add a migration calling ms5_admin.set_columnstore and ms5_admin.set_retention.",
        protects="hypertables growing without compression or retention until the disk is full",
    ),
    PolicySpec(
        name="containers-awaited-healthy",
        kind="stack",
        rule=stack.containers_awaited_healthy,
        remediation="Set wait=true on the container, or add a ContainerHealth gate depending on it.",
        protects="`pulumi up` carrying on while a container is still starting or failing",
    ),
    PolicySpec(
        name="migrations-after-healthy-database",
        kind="stack",
        rule=stack.migrations_after_healthy_database,
        remediation="depends_on=[database.healthy] (the ContainerHealth gate) on the MigrationSet.",
        protects="migrations against a server that is still initialising",
    ),
    PolicySpec(
        name="production-has-backup",
        kind="stack",
        rule=stack.production_has_backup,
        remediation="Add the Backup component to the production stack.",
        protects="a production database without backups",
    ),
    PolicySpec(
        name="backup-before-migrations",
        kind="stack",
        rule=stack.backup_before_migrations,
        remediation="Make the MigrationSet depend on the Backup.",
        protects="a failed migration with no backup taken just before it",
    ),
    PolicySpec(
        name="readers-after-migrations",
        kind="stack",
        rule=stack.readers_after_migrations,
        remediation="depends_on=[migrations] on the exporter, Verification and Benchmark.",
        protects="readers failing (or passing vacuously) on a schema not migrated yet",
    ),
    PolicySpec(
        name="production-has-benchmark",
        kind="stack",
        rule=stack.production_has_benchmark,
        remediation="Add the Benchmark component with thresholds and gate=true.",
        protects="performance regressions reaching production unmeasured",
    ),
    PolicySpec(
        name="production-gates-the-checks",
        kind="stack",
        rule=stack.production_gates_the_checks,
        remediation="Create the DeployGate last, depending on the Verification and the Benchmark.",
        protects="a red verification or benchmark that does not stop the production deploy",
    ),
    PolicySpec(
        name="pgdata-volume-protected",
        kind="stack",
        rule=stack.pgdata_volume_protected,
        remediation="Set ms5:protectData true in the production stack.",
        protects="`pulumi destroy` or a rename deleting the production data volume",
    ),
    PolicySpec(
        name="monitoring-roles-not-superuser",
        kind="stack",
        rule=stack.monitoring_roles_not_superuser,
        remediation="Connect the exporter and Grafana as their MonitoringRole roles.",
        protects="a monitoring credential that can change or read everything",
    ),
)
