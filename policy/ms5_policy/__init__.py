"""The MS5.0 TimescaleDB policy pack: rules as pure functions, wired by ``policy/__main__.py``."""
