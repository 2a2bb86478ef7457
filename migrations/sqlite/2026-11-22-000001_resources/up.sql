-- Current state of every resource: a pointer to its latest version, never the body.
CREATE TABLE resource (
    res_key      INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL, -- microseconds since the Unix epoch, UTC
    deleted      BOOLEAN NOT NULL,
    patient      TEXT,             -- main patient compartment (logical id), the partition key
    UNIQUE (res_type, res_id)
);

-- Every version ever written, immutable; a deletion is a row without body.
CREATE TABLE resource_version (
    res_key      BIGINT NOT NULL REFERENCES resource (res_key),
    version      BIGINT NOT NULL,
    res_type     TEXT   NOT NULL,
    res_id       TEXT   NOT NULL,
    last_updated BIGINT NOT NULL,
    method       TEXT   NOT NULL, -- POST, PUT, PATCH or DELETE
    body         TEXT,
    PRIMARY KEY (res_key, version)
) WITHOUT ROWID;

CREATE INDEX resource_version_by_time ON resource_version (last_updated, res_key, version);
CREATE INDEX resource_version_by_type_time ON resource_version (res_type, last_updated, res_key, version);

-- Every patient compartment a resource belongs to (a resource may be in several).
CREATE TABLE resource_compartment (
    patient TEXT   NOT NULL,
    res_key BIGINT NOT NULL REFERENCES resource (res_key),
    PRIMARY KEY (patient, res_key)
) WITHOUT ROWID;

CREATE INDEX resource_compartment_by_key ON resource_compartment (res_key);
