"""`./ms5 pin-images` writes resolved digests into the stack file and keeps its comments."""

from __future__ import annotations

import shutil
import stat

import pin_images
from harness import ROOT
from ms5_components.settings import SPECS, load_settings
from ms5_components.stack_files import config_string, load_yaml

FAKE_DOCKER = """#!/bin/sh
case "$1" in
  pull) exit 0 ;;
  image) ref="$5"; h=$(printf '%s' "$ref" | sha256sum | cut -c1-64); echo "[\\"x@sha256:$h\\"]" ;;
  *) exit 2 ;;
esac
"""


def test_pins_every_image_and_production_then_validates(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text(FAKE_DOCKER)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    shutil.copy(ROOT / "Pulumi.production.yaml", tmp_path / "Pulumi.production.yaml")

    assert pin_images.pin("production", root=tmp_path) == 0

    text = (tmp_path / "Pulumi.production.yaml").read_text()
    assert text.startswith("# Production")  # comments kept
    config = load_yaml(text)["config"]
    image_keys = [s.qualified for s in SPECS if s.key.endswith("Image")]
    for key in image_keys:
        assert "@sha256:" in config[key], key
    raw = {k: config_string(v) for k, v in config.items()}
    assert load_settings(raw, stack="production").is_production
