-- MS5.0 schema, migration 3: the factory telemetry hypertables.
--
-- Chunk intervals follow each table's data rate, so that the chunk being written (with its
-- indexes) stays a fraction of the container's memory (2 GiB by default):
--   machine_metrics    ~500 rows/s (50 machines x 10 signals at 1 Hz): 2-hour chunks, ~3.6 M rows
--   production_counts  ~5 rows/s (one row per cycle or per minute and machine): 7-day chunks
--   energy_readings    ~3 rows/s (one meter per machine every 15 s): 7-day chunks
--   oee_measurements   one row per machine and 15 minutes: 30-day chunks
--   downtime_events    a few events per machine and shift: 90-day chunks
-- No foreign keys on the hypertables: ingest must not fail or slow down on reference data.

CREATE TABLE IF NOT EXISTS ms5.machine_metrics (
    time       timestamptz      NOT NULL,
    machine_id text             NOT NULL,
    metric     text             NOT NULL,
    value      double precision NOT NULL
);
COMMENT ON TABLE ms5.machine_metrics IS 'Machine signals (temperature, vibration, spindle speed, ...), one row per sample';
SELECT create_hypertable('ms5.machine_metrics', by_range('time', INTERVAL '2 hours'),
                         if_not_exists => true);
CREATE INDEX IF NOT EXISTS machine_metrics_machine_metric_time_idx
    ON ms5.machine_metrics (machine_id, metric, time DESC);

CREATE TABLE IF NOT EXISTS ms5.production_counts (
    time          timestamptz NOT NULL,
    machine_id    text        NOT NULL,
    product_code  text,
    shift_id      text,
    good_count    integer     NOT NULL CHECK (good_count >= 0),
    scrap_count   integer     NOT NULL DEFAULT 0 CHECK (scrap_count >= 0),
    cycle_seconds double precision CHECK (cycle_seconds > 0)
);
COMMENT ON TABLE ms5.production_counts IS 'Parts produced per machine and interval (good and scrap)';
SELECT create_hypertable('ms5.production_counts', by_range('time', INTERVAL '7 days'),
                         if_not_exists => true);
CREATE INDEX IF NOT EXISTS production_counts_machine_time_idx
    ON ms5.production_counts (machine_id, time DESC);

CREATE TABLE IF NOT EXISTS ms5.oee_measurements (
    time           timestamptz      NOT NULL,
    machine_id     text             NOT NULL,
    period_seconds integer          NOT NULL CHECK (period_seconds > 0),
    availability   double precision NOT NULL CHECK (availability BETWEEN 0 AND 1),
    performance    double precision NOT NULL CHECK (performance BETWEEN 0 AND 1.5),
    quality        double precision NOT NULL CHECK (quality BETWEEN 0 AND 1),
    oee            double precision GENERATED ALWAYS AS (availability * performance * quality) STORED
);
COMMENT ON TABLE ms5.oee_measurements IS 'OEE per machine and period (end of period in time); oee = A x P x Q';
SELECT create_hypertable('ms5.oee_measurements', by_range('time', INTERVAL '30 days'),
                         if_not_exists => true);
CREATE INDEX IF NOT EXISTS oee_measurements_machine_time_idx
    ON ms5.oee_measurements (machine_id, time DESC);

CREATE TABLE IF NOT EXISTS ms5.downtime_events (
    time             timestamptz NOT NULL,
    machine_id       text        NOT NULL,
    ended_at         timestamptz CHECK (ended_at >= time),
    reason_code      text        NOT NULL,
    category         text        NOT NULL,
    planned          boolean     NOT NULL DEFAULT false,
    duration_seconds double precision CHECK (duration_seconds >= 0),
    comment          text
);
COMMENT ON TABLE ms5.downtime_events IS 'Machine stops: time is the start; ended_at and duration_seconds are set when the stop ends';
SELECT create_hypertable('ms5.downtime_events', by_range('time', INTERVAL '90 days'),
                         if_not_exists => true);
CREATE INDEX IF NOT EXISTS downtime_events_machine_time_idx
    ON ms5.downtime_events (machine_id, time DESC);
CREATE INDEX IF NOT EXISTS downtime_events_open_idx
    ON ms5.downtime_events (machine_id, time DESC) WHERE ended_at IS NULL;

CREATE TABLE IF NOT EXISTS ms5.energy_readings (
    time         timestamptz      NOT NULL,
    machine_id   text             NOT NULL,
    power_kw     double precision NOT NULL CHECK (power_kw >= 0),
    energy_kwh   double precision NOT NULL CHECK (energy_kwh >= 0),
    power_factor double precision CHECK (power_factor BETWEEN 0 AND 1)
);
COMMENT ON TABLE ms5.energy_readings IS 'Electrical power and energy per machine meter and sample interval';
SELECT create_hypertable('ms5.energy_readings', by_range('time', INTERVAL '7 days'),
                         if_not_exists => true);
CREATE INDEX IF NOT EXISTS energy_readings_machine_time_idx
    ON ms5.energy_readings (machine_id, time DESC);
