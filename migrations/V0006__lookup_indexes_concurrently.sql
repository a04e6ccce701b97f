-- ms5:transaction=off
-- MS5.0 schema, migration 6: lookup indexes built without blocking writers. Runs outside a
-- transaction, one statement at a time; every statement is re-runnable (IF NOT EXISTS), because a
-- failed run is retried from the first statement.

-- Plain table: CREATE INDEX CONCURRENTLY (no write lock while it builds).
CREATE INDEX CONCURRENTLY IF NOT EXISTS machines_line_idx ON ms5.machines (site, line_id);

-- Hypertables cannot build CONCURRENTLY; transaction_per_chunk builds one chunk per transaction,
-- so a write lock is held on one chunk at a time.
CREATE INDEX IF NOT EXISTS downtime_events_reason_time_idx
    ON ms5.downtime_events (reason_code, time DESC)
    WITH (timescaledb.transaction_per_chunk);
CREATE INDEX IF NOT EXISTS production_counts_product_time_idx
    ON ms5.production_counts (product_code, time DESC)
    WITH (timescaledb.transaction_per_chunk);
