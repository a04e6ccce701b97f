"""Pulumi components and dynamic providers for the MS5.0 TimescaleDB platform."""

__all__: list[str] = []
