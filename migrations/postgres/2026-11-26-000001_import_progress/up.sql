-- `carnet import`: how far each source file was loaded. A row is written in the same
-- transaction as the resources it covers, so after an interruption the next run starts at
-- the first byte not committed and nothing is loaded twice.
CREATE TABLE import_progress (
    -- The file's canonical path.
    source TEXT PRIMARY KEY,
    -- Its size and modification time (µs since the epoch) when it was read: a file that
    -- changed since is loaded again from the start.
    size BIGINT NOT NULL,
    modified BIGINT NOT NULL,
    -- Bytes and lines committed (NDJSON: the start of the next line; a Bundle: all or none).
    committed_bytes BIGINT NOT NULL,
    committed_lines BIGINT NOT NULL,
    done BOOLEAN NOT NULL,
    updated BIGINT NOT NULL
);
