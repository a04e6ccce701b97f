"""Write every generated monitoring file of a stack into a directory, for review.

    uv run python tools/gen_monitoring.py OUT_DIR [--stack staging]

The files are exactly what the containers receive (built by ``ms5_components.monitoring.config``
from the stack's committed config and the defaults), plus the promtool unit tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main(argv: list[str] | None = None) -> int:
    from harness import stack_config
    from ms5_components.monitoring.config import FileInputs, MonitoringSettings, generate_files
    from ms5_components.monitoring.exporter_queries import parse_timescaledb_version
    from ms5_components.settings import load_settings
    from stacks import overrides_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write into")
    parser.add_argument("--stack", default="staging")
    args = parser.parse_args(argv)

    settings = load_settings(stack_config(args.stack, overrides_for(args.stack)), stack=args.stack)
    mon = MonitoringSettings.from_settings(settings)
    prefix = settings.prefix()
    generated = generate_files(
        FileInputs(
            timescaledb_version=parse_timescaledb_version(settings.database.image.tag),
            database=settings.database.name,
            db_host=f"{prefix}-timescaledb",
            exporter_host=f"{prefix}-postgres-exporter",
            prometheus_host=f"{prefix}-prometheus",
            pushgateway_host=f"{prefix}-pushgateway",
            stack=settings.stack,
            top_n=mon.exporter_top_n,
            alerts=mon.alert_settings,
        )
    )
    for name, text in sorted(generated.by_name().items()):
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
