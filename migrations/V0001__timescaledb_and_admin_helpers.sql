-- MS5.0 schema, migration 1: the TimescaleDB extension, the schemas, and the helpers the later
-- migrations use for Timescale-licensed features.
--
-- Full-license features (columnstore/compression, retention and refresh policies, continuous
-- aggregates) are only ever created through the ms5_admin helpers below. On an Apache-licensed
-- server each helper skips its feature with a WARNING; the migration runner records every WARNING
-- in ms5_meta.schema_history (outcome applied_with_warnings), so nothing is skipped silently.
-- Each policy helper *replaces* a policy whose interval differs (remove, then add): a later
-- migration that calls it with a new interval really changes the policy, which adding with
-- if_not_exists would not.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE SCHEMA IF NOT EXISTS ms5;
COMMENT ON SCHEMA ms5 IS 'MS5.0 factory telemetry: hypertables and dashboard rollups';
CREATE SCHEMA IF NOT EXISTS ms5_admin;
COMMENT ON SCHEMA ms5_admin IS 'MS5.0 migration helpers (license-aware TimescaleDB features)';

CREATE OR REPLACE FUNCTION ms5_admin.timescale_license() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('timescaledb.license', true), 'unknown')
$$;

CREATE OR REPLACE FUNCTION ms5_admin.has_full_license() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT ms5_admin.timescale_license() = 'timescale'
$$;

-- Installed extension version as numbers ({2,19,3}); '2.20.0-dev' reads as {2,20,0}.
CREATE OR REPLACE FUNCTION ms5_admin.timescaledb_version() RETURNS int[]
LANGUAGE sql STABLE AS $$
    SELECT string_to_array(split_part(extversion, '-', 1), '.')::int[]
    FROM pg_catalog.pg_extension WHERE extname = 'timescaledb'
$$;

-- The columnstore API (enable_columnstore, add_columnstore_policy) exists from 2.18; before it
-- the compression API (timescaledb.compress, add_compression_policy) does the same job.
CREATE OR REPLACE FUNCTION ms5_admin.has_columnstore_api() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT ms5_admin.timescaledb_version() >= ARRAY[2, 18]
$$;

CREATE OR REPLACE FUNCTION ms5_admin.skip_feature(feature text, target text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'ms5: % on % skipped: this TimescaleDB server has the "%" license, the feature needs "timescale"',
        feature, target, ms5_admin.timescale_license()
        USING HINT = 'Deploy the Timescale-licensed image and call the ms5_admin helper again in a new migration.';
    RETURN 'skipped (license)';
END
$$;

-- The hypertable a policy job of `relation` is attached to: the relation itself, or the
-- materialization hypertable of a continuous aggregate.
CREATE OR REPLACE FUNCTION ms5_admin.policy_target(
    relation regclass, OUT target_schema name, OUT target_name name
)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(ca.materialization_hypertable_schema, n.nspname),
           coalesce(ca.materialization_hypertable_name, c.relname)
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN timescaledb_information.continuous_aggregates ca
           ON ca.view_schema = n.nspname AND ca.view_name = c.relname
    WHERE c.oid = relation
$$;

CREATE OR REPLACE FUNCTION ms5_admin.policy_job(relation regclass, policy name)
RETURNS TABLE (job_id integer, config jsonb, schedule_interval interval)
LANGUAGE sql STABLE AS $$
    SELECT j.job_id, j.config, j.schedule_interval
    FROM timescaledb_information.jobs j, ms5_admin.policy_target(relation) t
    WHERE j.proc_name = policy
      AND j.hypertable_schema = t.target_schema
      AND j.hypertable_name = t.target_name
$$;

CREATE OR REPLACE FUNCTION ms5_admin.is_continuous_aggregate(relation regclass) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN timescaledb_information.continuous_aggregates ca
          ON ca.view_schema = n.nspname AND ca.view_name = c.relname
        WHERE c.oid = relation
    )
$$;

-- Columnstore (compression) settings and the policy that converts chunks older than
-- `compress_after`. Settings are applied once (changing segment_by of a hypertable that already
-- has compressed chunks is a manual operation); the policy is replaced when its interval differs.
CREATE OR REPLACE FUNCTION ms5_admin.set_columnstore(
    hypertable regclass, segment_by text, order_by text, compress_after interval
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    columnstore boolean;
    enabled boolean;
    existing_job integer;
    existing_after interval;
    result text := 'unchanged';
BEGIN
    IF NOT ms5_admin.has_full_license() THEN
        RETURN ms5_admin.skip_feature('columnstore (compression) and its policy', hypertable::text);
    END IF;
    columnstore := ms5_admin.has_columnstore_api();
    SELECT h.compression_enabled INTO enabled
    FROM timescaledb_information.hypertables h
    JOIN pg_catalog.pg_class c ON c.relname = h.hypertable_name
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = h.hypertable_schema
    WHERE c.oid = hypertable;
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'ms5: % is not a hypertable', hypertable;
    END IF;
    IF NOT enabled THEN
        IF columnstore THEN
            EXECUTE format(
                'ALTER TABLE %s SET (timescaledb.enable_columnstore = true, '
                'timescaledb.segmentby = %L, timescaledb.orderby = %L)',
                hypertable, segment_by, order_by);
        ELSE
            EXECUTE format(
                'ALTER TABLE %s SET (timescaledb.compress = true, '
                'timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
                hypertable, segment_by, order_by);
        END IF;
        result := 'enabled';
    END IF;
    SELECT j.job_id, (j.config ->> 'compress_after')::interval INTO existing_job, existing_after
    FROM ms5_admin.policy_job(hypertable, 'policy_compression') j;
    IF existing_job IS NOT NULL AND existing_after = compress_after THEN
        RETURN result;
    END IF;
    IF existing_job IS NOT NULL THEN
        IF columnstore THEN
            CALL remove_columnstore_policy(hypertable);
        ELSE
            PERFORM remove_compression_policy(hypertable);
        END IF;
        result := result || ', policy replaced';
    ELSE
        result := result || ', policy added';
    END IF;
    IF columnstore THEN
        CALL add_columnstore_policy(hypertable, after => compress_after);
    ELSE
        PERFORM add_compression_policy(hypertable, compress_after => compress_after);
    END IF;
    RETURN result;
END
$$;

-- Retention: chunks (or rollup buckets) older than `drop_after` are dropped by a background job.
CREATE OR REPLACE FUNCTION ms5_admin.set_retention(relation regclass, drop_after interval)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    existing_job integer;
    existing_after interval;
BEGIN
    IF NOT ms5_admin.has_full_license() THEN
        RETURN ms5_admin.skip_feature('retention policy', relation::text);
    END IF;
    SELECT j.job_id, (j.config ->> 'drop_after')::interval INTO existing_job, existing_after
    FROM ms5_admin.policy_job(relation, 'policy_retention') j;
    IF existing_job IS NOT NULL AND existing_after = drop_after THEN
        RETURN 'unchanged';
    END IF;
    IF existing_job IS NOT NULL THEN
        PERFORM remove_retention_policy(relation);
    END IF;
    PERFORM add_retention_policy(relation, drop_after => drop_after);
    RETURN CASE WHEN existing_job IS NULL THEN 'policy added' ELSE 'policy replaced' END;
END
$$;

-- Refresh policy of a continuous aggregate (skipped for the plain-view fallback).
CREATE OR REPLACE FUNCTION ms5_admin.set_refresh_policy(
    rollup regclass, start_offset interval, end_offset interval, schedule_interval interval
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    existing_job integer;
    existing_config jsonb;
    existing_schedule interval;
BEGIN
    IF NOT ms5_admin.has_full_license() THEN
        RETURN ms5_admin.skip_feature('continuous aggregate refresh policy', rollup::text);
    END IF;
    IF NOT ms5_admin.is_continuous_aggregate(rollup) THEN
        RAISE WARNING 'ms5: % is a plain view, not a continuous aggregate: no refresh policy', rollup
            USING HINT = 'Call ms5_admin.create_continuous_aggregate again to convert it.';
        RETURN 'skipped (plain view)';
    END IF;
    SELECT j.job_id, j.config, j.schedule_interval
      INTO existing_job, existing_config, existing_schedule
    FROM ms5_admin.policy_job(rollup, 'policy_refresh_continuous_aggregate') j;
    IF existing_job IS NOT NULL
       AND (existing_config ->> 'start_offset')::interval = start_offset
       AND (existing_config ->> 'end_offset')::interval = end_offset
       AND existing_schedule = schedule_interval THEN
        RETURN 'unchanged';
    END IF;
    IF existing_job IS NOT NULL THEN
        PERFORM remove_continuous_aggregate_policy(rollup, if_exists => true);
    END IF;
    PERFORM add_continuous_aggregate_policy(rollup,
        start_offset => start_offset, end_offset => end_offset,
        schedule_interval => schedule_interval);
    RETURN CASE WHEN existing_job IS NULL THEN 'policy added' ELSE 'policy replaced' END;
END
$$;

-- A dashboard rollup: a real-time continuous aggregate (created WITH NO DATA; its refresh policy
-- fills it) on a Timescale-licensed server; on an Apache server a plain view with the same name
-- and columns, so dashboards keep working (computed at query time), with a WARNING. Called again
-- on a server that now has the full license, it converts the plain view into a continuous
-- aggregate. `view_name` is a schema-qualified name; `query` a SELECT grouped by a time_bucket.
CREATE OR REPLACE FUNCTION ms5_admin.create_continuous_aggregate(
    view_name text, query text, materialized_only boolean DEFAULT false
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    existing regclass := to_regclass(view_name);
BEGIN
    IF existing IS NOT NULL THEN
        IF ms5_admin.is_continuous_aggregate(existing) THEN
            RETURN 'exists';
        END IF;
        IF ms5_admin.has_full_license() THEN
            EXECUTE format('DROP VIEW %s', existing);
        END IF;
    END IF;
    IF ms5_admin.has_full_license() THEN
        EXECUTE format(
            'CREATE MATERIALIZED VIEW %s WITH (timescaledb.continuous, '
            'timescaledb.materialized_only = %L) AS %s WITH NO DATA',
            view_name, materialized_only, query);
        RETURN 'created continuous aggregate';
    END IF;
    EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', view_name, query);
    PERFORM ms5_admin.skip_feature('continuous aggregate (created as a plain view instead)', view_name);
    RETURN 'created plain view';
END
$$;

-- Materialize a continuous aggregate now. A procedure: call it with CALL from a migration whose
-- header says '-- ms5:transaction=off' (refresh_continuous_aggregate cannot run in a transaction).
CREATE OR REPLACE PROCEDURE ms5_admin.refresh_continuous_aggregate(
    rollup regclass, window_start timestamptz DEFAULT NULL, window_end timestamptz DEFAULT NULL
)
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ms5_admin.has_full_license() OR NOT ms5_admin.is_continuous_aggregate(rollup) THEN
        PERFORM ms5_admin.skip_feature('continuous aggregate refresh', rollup::text);
        RETURN;
    END IF;
    CALL refresh_continuous_aggregate(rollup, window_start, window_end);
END
$$;
