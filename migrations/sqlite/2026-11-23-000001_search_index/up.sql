-- Search indexes: one table per kind of value, rows for the current version of each live
-- resource only (written in the resource's transaction, removed when it is superseded or
-- deleted). See docs/database.md.

-- The index keys: a search parameter of a resource type (`Observation`, `code`), or one of
-- its derived keys (`code:text`, `identifier:of-type`, `subject:identifier`, `combo$0`...).
-- Every node registers the built-in table at start; the ids are this database's own.
CREATE TABLE search_param (
    param_id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    res_type TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    UNIQUE (res_type, name)
);

-- `grp` ties the components of one composite value together (0 outside composites).
-- Texts longer than 512 bytes are cut (at a character boundary) before indexing.

CREATE TABLE search_string (
    res_key    BIGINT  NOT NULL,
    param_id   INTEGER NOT NULL,
    grp        INTEGER NOT NULL,
    normalized TEXT NOT NULL, -- lowercase, accents removed: default and :contains
    exact      TEXT NOT NULL, -- as written: :exact
    PRIMARY KEY (res_key, param_id, grp, normalized, exact)
) WITHOUT ROWID;
CREATE INDEX search_string_by_value ON search_string (param_id, normalized, res_key);

CREATE TABLE search_token (
    res_key  BIGINT  NOT NULL,
    param_id INTEGER NOT NULL,
    grp      INTEGER NOT NULL,
    system   TEXT NOT NULL, -- '' when the value has no system
    code     TEXT NOT NULL,
    PRIMARY KEY (res_key, param_id, grp, code, system)
) WITHOUT ROWID;
CREATE INDEX search_token_by_value ON search_token (param_id, code, system, res_key);

CREATE TABLE search_reference (
    res_key     BIGINT  NOT NULL,
    param_id    INTEGER NOT NULL,
    grp         INTEGER NOT NULL,
    target_type TEXT NOT NULL, -- '' when unknown
    target_id   TEXT NOT NULL, -- '' for a URL that is not Type/id on this server
    url         TEXT NOT NULL, -- absolute URL, urn or canonical as written; '' for Type/id
    PRIMARY KEY (res_key, param_id, grp, target_type, target_id, url)
) WITHOUT ROWID;
CREATE INDEX search_reference_by_target ON search_reference (param_id, target_id, target_type, res_key);
CREATE INDEX search_reference_by_url ON search_reference (param_id, url, res_key) WHERE url <> '';

-- Half-open intervals [low, high) in microseconds since the epoch, UTC.
CREATE TABLE search_date (
    res_key  BIGINT  NOT NULL,
    param_id INTEGER NOT NULL,
    grp      INTEGER NOT NULL,
    low      BIGINT  NOT NULL,
    high     BIGINT  NOT NULL,
    PRIMARY KEY (res_key, param_id, grp, low, high)
) WITHOUT ROWID;
-- One value index per table: each index entry is a page a write dirties (see database.md).
CREATE INDEX search_date_by_value ON search_date (param_id, low, high, res_key);

-- A value is [value, value]; a Range is [low, high] (an open end is -/+ infinity as +-1e308).
CREATE TABLE search_number (
    res_key  BIGINT  NOT NULL,
    param_id INTEGER NOT NULL,
    grp      INTEGER NOT NULL,
    low      REAL NOT NULL,
    high     REAL NOT NULL,
    PRIMARY KEY (res_key, param_id, grp, low, high)
) WITHOUT ROWID;
CREATE INDEX search_number_by_value ON search_number (param_id, low, high, res_key);

-- As search_number, plus the unit as written and, when UCUM can express it, the value in
-- canonical units (`canon_unit` '' otherwise).
CREATE TABLE search_quantity (
    res_key    BIGINT  NOT NULL,
    param_id   INTEGER NOT NULL,
    grp        INTEGER NOT NULL,
    low        REAL NOT NULL,
    high       REAL NOT NULL,
    system     TEXT NOT NULL,
    code       TEXT NOT NULL, -- the unit code, else the unit text
    canon_unit TEXT NOT NULL,
    canon_low  REAL NOT NULL,
    canon_high REAL NOT NULL,
    PRIMARY KEY (res_key, param_id, grp, code, system, low, high)
) WITHOUT ROWID;
CREATE INDEX search_quantity_by_value ON search_quantity (param_id, canon_unit, canon_low, res_key);

CREATE TABLE search_uri (
    res_key  BIGINT  NOT NULL,
    param_id INTEGER NOT NULL,
    grp      INTEGER NOT NULL,
    uri      TEXT NOT NULL,
    PRIMARY KEY (res_key, param_id, grp, uri)
) WITHOUT ROWID;
CREATE INDEX search_uri_by_value ON search_uri (param_id, uri, res_key);

-- A type's resources in key order: searches without a selective clause scan it and stop at
-- the page (keyset paging on res_key).
CREATE INDEX resource_by_type ON resource (res_type, res_key);

-- Secrets shared by every node of this database: `cursor` seals search paging cursors, which
-- carry sort values (names, dates) that must not travel readable in URLs.
CREATE TABLE server_key (
    name TEXT NOT NULL PRIMARY KEY,
    key  BLOB NOT NULL
);
