-- MS5.0 schema, migration 5: the rollups the dashboards read.
-- Real-time continuous aggregates (materialized_only = false: the newest buckets are computed from
-- the raw rows at query time) on a Timescale-licensed server; plain views with the same columns on
-- an Apache server (recorded WARNING). Refresh windows cover at least two buckets; end offsets
-- leave the still-changing bucket to the real-time part.

SELECT ms5_admin.create_continuous_aggregate('ms5.machine_metrics_1m', $q$
    SELECT time_bucket(INTERVAL '1 minute', time) AS bucket, machine_id, metric,
           avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
           count(*) AS samples
    FROM ms5.machine_metrics
    GROUP BY bucket, machine_id, metric
$q$);
SELECT ms5_admin.create_continuous_aggregate('ms5.machine_metrics_1h', $q$
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, machine_id, metric,
           avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
           count(*) AS samples
    FROM ms5.machine_metrics
    GROUP BY bucket, machine_id, metric
$q$);
SELECT ms5_admin.create_continuous_aggregate('ms5.production_1h', $q$
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, machine_id,
           sum(good_count) AS good_count, sum(scrap_count) AS scrap_count,
           sum(good_count + scrap_count) AS total_count
    FROM ms5.production_counts
    GROUP BY bucket, machine_id
$q$);
SELECT ms5_admin.create_continuous_aggregate('ms5.energy_1h', $q$
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, machine_id,
           sum(energy_kwh) AS energy_kwh, avg(power_kw) AS avg_power_kw,
           max(power_kw) AS max_power_kw
    FROM ms5.energy_readings
    GROUP BY bucket, machine_id
$q$);
SELECT ms5_admin.create_continuous_aggregate('ms5.downtime_1d', $q$
    SELECT time_bucket(INTERVAL '1 day', time) AS bucket, machine_id, category,
           count(*) AS events, sum(duration_seconds) AS downtime_seconds
    FROM ms5.downtime_events
    GROUP BY bucket, machine_id, category
$q$);
SELECT ms5_admin.create_continuous_aggregate('ms5.oee_1d', $q$
    SELECT time_bucket(INTERVAL '1 day', time) AS bucket, machine_id,
           avg(availability) AS availability, avg(performance) AS performance,
           avg(quality) AS quality, avg(oee) AS oee, sum(period_seconds) AS covered_seconds
    FROM ms5.oee_measurements
    GROUP BY bucket, machine_id
$q$);

SELECT ms5_admin.set_refresh_policy('ms5.machine_metrics_1m', INTERVAL '2 hours', INTERVAL '1 minute', INTERVAL '1 minute');
SELECT ms5_admin.set_refresh_policy('ms5.machine_metrics_1h', INTERVAL '3 days', INTERVAL '1 hour', INTERVAL '30 minutes');
SELECT ms5_admin.set_refresh_policy('ms5.production_1h', INTERVAL '7 days', INTERVAL '1 hour', INTERVAL '15 minutes');
SELECT ms5_admin.set_refresh_policy('ms5.energy_1h', INTERVAL '2 days', INTERVAL '1 hour', INTERVAL '15 minutes');
SELECT ms5_admin.set_refresh_policy('ms5.downtime_1d', INTERVAL '35 days', INTERVAL '1 day', INTERVAL '1 hour');
SELECT ms5_admin.set_refresh_policy('ms5.oee_1d', INTERVAL '35 days', INTERVAL '1 day', INTERVAL '1 hour');

-- Rollup retention: minute buckets for half a year, hourly signal buckets for three years.
SELECT ms5_admin.set_retention('ms5.machine_metrics_1m', INTERVAL '180 days');
SELECT ms5_admin.set_retention('ms5.machine_metrics_1h', INTERVAL '3 years');
