-- MS5.0 schema, migration 2: reference data the telemetry points at (plain tables).

CREATE TABLE IF NOT EXISTS ms5.machines (
    machine_id          text PRIMARY KEY,
    site                text NOT NULL,
    line_id             text NOT NULL,
    name                text NOT NULL,
    ideal_cycle_seconds double precision CHECK (ideal_cycle_seconds > 0),
    commissioned_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ms5.machines IS 'One row per machine; machine_id is the key every telemetry row carries';

CREATE TABLE IF NOT EXISTS ms5.downtime_reasons (
    reason_code text PRIMARY KEY,
    category    text NOT NULL
                CHECK (category IN ('planned', 'unplanned', 'changeover', 'maintenance',
                                    'quality', 'material', 'other')),
    planned     boolean NOT NULL,
    description text NOT NULL
);
COMMENT ON TABLE ms5.downtime_reasons IS 'Downtime reason codes and their OEE category';
