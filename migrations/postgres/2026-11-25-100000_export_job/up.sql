-- Bulk export jobs ($export): the request, who asked, how far the worker got (a checkpoint
-- it resumes from after a restart), and the outcome. See docs/bulk-export.md.
CREATE TABLE export_job (
    id               TEXT    PRIMARY KEY,   -- random, unguessable (UUID)
    owner            TEXT,                  -- caller identity (SHA-256 of Authorization), NULL: none
    scope            TEXT,                  -- JSON array of patient ids the caller may see; NULL: everything
    level            TEXT    NOT NULL,      -- system, patient or group
    group_id         TEXT,                  -- Group-level: the Group's logical id
    request          TEXT    NOT NULL,      -- the kick-off request URL, for the manifest
    types            TEXT    NOT NULL,      -- JSON array: the types to export, in order
    type_filters     TEXT    NOT NULL,      -- JSON array of "Type?query" (_typeFilter)
    since            BIGINT,                -- _since, microseconds since the epoch
    output_format    TEXT    NOT NULL,
    transaction_time BIGINT  NOT NULL,      -- resources last updated after it are left out
    status           TEXT    NOT NULL,      -- queued, running, completed, failed
    created          BIGINT  NOT NULL,
    finished         BIGINT,
    error            TEXT
);

-- A job's checkpoint, written by the worker as it goes and read back when it resumes: the
-- type being exported (index into types), its total and progress, the keyset position, the
-- file being written (part number, resources, bytes) and the total so far.
CREATE TABLE export_progress (
    job_id     TEXT    PRIMARY KEY REFERENCES export_job (id) ON DELETE CASCADE,
    type_index INTEGER NOT NULL,
    type_total BIGINT,
    type_done  BIGINT  NOT NULL,
    after_key  BIGINT  NOT NULL,
    file_part  INTEGER NOT NULL,
    file_count BIGINT  NOT NULL,
    file_bytes BIGINT  NOT NULL,
    exported   BIGINT  NOT NULL
);

-- The finished NDJSON files of a job, in manifest order.
CREATE TABLE export_file (
    job_id   TEXT    NOT NULL REFERENCES export_job (id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,
    res_type TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    count    BIGINT  NOT NULL,
    bytes    BIGINT  NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- Group-level jobs: the Group's Patient members when the job was accepted.
CREATE TABLE export_patient (
    job_id  TEXT NOT NULL REFERENCES export_job (id) ON DELETE CASCADE,
    patient TEXT NOT NULL,
    PRIMARY KEY (job_id, patient)
);
