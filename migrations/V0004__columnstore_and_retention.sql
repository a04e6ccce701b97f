-- MS5.0 schema, migration 4: columnstore (compression) and retention of the raw telemetry.
-- Timescale-licensed features: on an Apache server each call is skipped with a WARNING that the
-- runner records in the history. To change an interval later, call the helper again with the new
-- value in a new migration: the existing policy is replaced.
--
-- Columnstore: segment by the columns dashboards filter on, order by time; convert a chunk once
-- it no longer receives writes (metrics after a day; counts and energy after late corrections;
-- downtime after open events have closed).

SELECT ms5_admin.set_columnstore('ms5.machine_metrics', 'machine_id, metric', 'time DESC', INTERVAL '1 day');
SELECT ms5_admin.set_columnstore('ms5.production_counts', 'machine_id', 'time DESC', INTERVAL '14 days');
SELECT ms5_admin.set_columnstore('ms5.energy_readings', 'machine_id', 'time DESC', INTERVAL '14 days');
SELECT ms5_admin.set_columnstore('ms5.oee_measurements', 'machine_id', 'time DESC', INTERVAL '60 days');
SELECT ms5_admin.set_columnstore('ms5.downtime_events', 'machine_id', 'time DESC', INTERVAL '180 days');

-- Retention: raw signals are kept 90 days (the rollups keep the history); business records longer.
SELECT ms5_admin.set_retention('ms5.machine_metrics', INTERVAL '90 days');
SELECT ms5_admin.set_retention('ms5.production_counts', INTERVAL '3 years');
SELECT ms5_admin.set_retention('ms5.energy_readings', INTERVAL '3 years');
SELECT ms5_admin.set_retention('ms5.oee_measurements', INTERVAL '5 years');
SELECT ms5_admin.set_retention('ms5.downtime_events', INTERVAL '5 years');
