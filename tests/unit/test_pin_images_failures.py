"""`./ms5 pin-images` fails cleanly: what failed and what to do, no traceback, the file untouched."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import pin_images
from harness import ROOT
from ms5_components.settings import SPECS
from ms5_components.stack_files import read_stack_config

IMAGE_KEYS = [s.qualified for s in SPECS if s.key.endswith("Image")]

# A stand-in docker: `pull` runs the case given in $PULL_CASE for each reference.
DOCKER = """#!/bin/sh
case "$1" in
  pull)
    ref="$3"
    case "$PULL_CASE:$ref" in
      engine:*) echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1 ;;
      *unknown*:prom/prometheus:*) echo "Error response from daemon: manifest for $ref not found: manifest unknown: manifest unknown" >&2; exit 1 ;;
      *network*:grafana/*) echo "Error response from daemon: Get \\"https://registry-1.docker.io/v2/\\": dial tcp: lookup registry-1.docker.io: no such host" >&2; exit 1 ;;
      *denied*:quay.io/*) echo "Error response from daemon: unauthorized: access to the requested resource is not authorized" >&2; exit 1 ;;
      *) exit 0 ;;
    esac ;;
  image)
    ref="$5"
    case "$PULL_CASE:$ref" in
      local:*) echo '[]' ;;
      *) h=$(printf '%s' "$ref" | sha256sum | cut -c1-64); echo "[\\"x@sha256:$h\\"]" ;;
    esac ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text(DOCKER)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.production.yaml", root / "Pulumi.production.yaml")
    return root


def _run(root: Path, case: str, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setenv("PULL_CASE", case)
    before = (root / "Pulumi.production.yaml").read_bytes()
    code = pin_images.main(["production"], root)
    out, err = capsys.readouterr()
    if code != 0:
        assert (root / "Pulumi.production.yaml").read_bytes() == before, "file changed"
    assert sorted(p.name for p in root.iterdir()) == ["Pulumi.production.yaml"], "temp file left"
    assert "Traceback" not in out + err
    return code, out, err


def test_engine_down_is_reported_once_and_nothing_is_written(project, monkeypatch, capsys):
    code, out, err = _run(project, "engine", monkeypatch, capsys)
    assert code == 1 and out == ""
    assert err.startswith("pin-images: 1 image(s) could not be pinned; Pulumi.production.yaml")
    assert "was not changed" in err
    assert "the Docker engine does not answer (Cannot connect to the Docker daemon" in err
    assert "sudo systemctl start docker" in err


def test_unknown_tag_names_the_key_and_the_fix(project, monkeypatch, capsys):
    code, _, err = _run(project, "unknown", monkeypatch, capsys)
    assert code == 1
    assert "ms5:prometheusImage: prom/prometheus:v2.53.3 is not in its registry" in err
    assert "correct the tag in the stack file" in err


def test_network_failure(project, monkeypatch, capsys):
    code, _, err = _run(project, "network", monkeypatch, capsys)
    assert code == 1
    assert "ms5:grafanaImage: pulling grafana/grafana:12.1.1 failed (" in err
    assert "no such host" in err and "check the network to the registry" in err


def test_every_failure_is_listed(project, monkeypatch, capsys):
    code, _, err = _run(project, "unknown,network,denied", monkeypatch, capsys)
    assert code == 1
    assert err.startswith("pin-images: 3 image(s) could not be pinned")
    for key in ("ms5:prometheusImage", "ms5:grafanaImage", "ms5:exporterImage"):
        assert f"  - {key}: " in err


def test_refused_pull_says_to_log_in(project, monkeypatch, capsys):
    code, _, err = _run(project, "denied", monkeypatch, capsys)
    assert code == 1
    assert "ms5:exporterImage: pulling quay.io/prometheuscommunity/postgres-exporter" in err
    assert "`docker login <registry>`" in err


def test_image_without_repository_digest(project, monkeypatch, capsys):
    code, _, err = _run(project, "local", monkeypatch, capsys)
    assert code == 1
    assert f"{len(IMAGE_KEYS)} image(s) could not be pinned" in err
    assert "docker reported no repository digest for timescale/timescaledb:2.19.3-pg17" in err


def test_invalid_image_in_the_stack_file(project, monkeypatch, capsys):
    path = project / "Pulumi.production.yaml"
    path.write_text(path.read_text().replace("timescaledb:2.19.3-pg17", "timescaledb:latest"))
    code, _, err = _run(project, "ok", monkeypatch, capsys)
    assert code == 1
    assert "ms5:dbImage: got 'timescale/timescaledb:latest' in Pulumi.production.yaml" in err


def test_success_writes_every_digest_and_keeps_comments(project, monkeypatch, capsys):
    path = project / "Pulumi.production.yaml"
    path.write_text(path.read_text().replace("pg17\n", "pg17  # the database\n", 1))
    code, out, _ = _run(project, "ok", monkeypatch, capsys)
    assert code == 0
    assert "wrote 5 digest(s) into Pulumi.production.yaml" in out
    text = path.read_text()
    assert "@sha256:" in text and "  # the database\n" in text
    config = read_stack_config(path)
    assert all("@sha256:" in str(config[k]) for k in IMAGE_KEYS)
    assert config["ms5:protectData"] is True  # the rest as it was


def test_a_failed_write_leaves_the_old_file(project, monkeypatch, capsys):
    monkeypatch.setenv("PULL_CASE", "ok")
    path = project / "Pulumi.production.yaml"
    before = path.read_bytes()

    def broken_replace(self: Path, target: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        pin_images.pin("production", project)
    assert path.read_bytes() == before
    assert sorted(p.name for p in project.iterdir()) == ["Pulumi.production.yaml"]


def test_unknown_stack_and_usage(project, capsys):
    assert pin_images.main(["qa"], project) == 1
    assert "pin-images: Pulumi.qa.yaml does not exist" in capsys.readouterr().err
    assert pin_images.main([], project) == 2
    assert "usage: ./ms5 pin-images STACK" in capsys.readouterr().err


def test_no_docker_cli_as_a_process():
    """Run as ./ms5 runs it, without docker on PATH: a message, exit 1, the real file intact."""
    before = (ROOT / "Pulumi.production.yaml").read_bytes()
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "pin_images.py"), "production"],
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent"},
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.count("the docker CLI is not installed") == 1
    assert "https://docs.docker.com/engine/install/" in done.stderr
    assert "Traceback" not in done.stderr
    assert (ROOT / "Pulumi.production.yaml").read_bytes() == before
