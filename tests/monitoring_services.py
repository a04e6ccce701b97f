"""The stack's exporter and Prometheus started in the test root with the program's own files
(``generate_files``, ``build_config``), for the tests that need them running."""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path

import ms5_testenv
from ms5_components.monitoring import exporter_queries, metrics, prometheus_config
from ms5_components.monitoring.config import GeneratedFiles
from ms5_components.monitoring.role import RoleProps


def start_exporter(
    testenv: ms5_testenv.ServiceEnv,
    *,
    port: int,
    database: str,
    role: RoleProps,
    files: GeneratedFiles,
    work: Path,
) -> ms5_testenv.HttpService:
    """postgres_exporter with the stack's queries and config, logging in as ``role`` to the
    server on 127.0.0.1:``port`` (its password from a file, as in the container)."""
    queries_file = work / "queries.yml"
    queries_file.write_text(files.exporter_queries)
    config_file = work / "postgres_exporter.yml"
    config_file.write_text(files.exporter_config)
    password_file = work / "password"
    password_file.write_text(role.password)
    staged = testenv.stage([password_file])
    return testenv.start_postgres_exporter(
        "",
        env={
            "DATA_SOURCE_URI": f"127.0.0.1:{port}/{database}?sslmode=disable",
            "DATA_SOURCE_USER": role.role,
            "DATA_SOURCE_PASS_FILE": staged[str(password_file)],
        },
        extra_args=exporter_queries.exporter_flags(
            queries_path=str(queries_file), config_path=str(config_file)
        ),
        files=[queries_file, config_file],
    )


def start_prometheus(
    testenv: ms5_testenv.ServiceEnv,
    *,
    exporter_port: int,
    pushgateway_url: str,
    files: GeneratedFiles,
    queries: tuple[exporter_queries.CustomQuery, ...],
    work: Path,
    scrape_seconds: int,
    self_target: str | None,
) -> ms5_testenv.HttpService:
    """Prometheus with the stack's config and alert rules, scraping the exporter and the
    Pushgateway every ``scrape_seconds``. Its own port is chosen when it starts, after the config
    is written: ``self_target`` is what the self-scrape job scrapes instead (None: the job is
    left out; the stack's config scrapes it by container name)."""
    rules_file = work / "ms5-alerts.yml"
    rules_file.write_text(files.prometheus_rules)
    gateway = urllib.parse.urlparse(pushgateway_url)
    config = prometheus_config.build_config(
        prometheus_config.ConfigInputs(
            targets=prometheus_config.Targets(
                exporter=f"127.0.0.1:{exporter_port}",
                pushgateway=f"{gateway.hostname}:{gateway.port}",
                prometheus=self_target or "unused",
            ),
            rule_files=(str(rules_file),),
            external_labels={"stack": "test"},
            interval_override_seconds=scrape_seconds,
        ),
        queries,
    )
    if self_target is None:
        config = dataclasses.replace(
            config, jobs=tuple(j for j in config.jobs if j.name != metrics.JOB_PROMETHEUS)
        )
    config_path = work / "prometheus.yml"
    config_path.write_text(config.render())
    return testenv.start_prometheus(config_path, rule_files=[rules_file])
