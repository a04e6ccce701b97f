-- MS5.0 schema, migration 7: statement statistics for monitoring.
-- The server preloads pg_stat_statements (see the component's server settings); the view lives in
-- the database that creates the extension. postgres_exporter's statement collector and the
-- dashboard's query-latency panel read it as the pg_monitor role.

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
