-- Business identifiers that no two live resources of a type may hold: today
-- DocumentReference.masterIdentifier, the document's XDS uniqueId in IHE MHD / PDSm (a
-- document is submitted once). The primary key refuses a second holder whatever door the
-- write came through, even when two submissions race. A row lives while its resource does:
-- an update rewrites it, a deletion frees the identifier.
CREATE TABLE unique_identifier (
    res_type TEXT   NOT NULL,
    system   TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    res_key  BIGINT NOT NULL REFERENCES resource (res_key),
    PRIMARY KEY (res_type, system, value)
);
CREATE INDEX unique_identifier_res_key ON unique_identifier (res_key);

-- Documents stored before this table: their identifiers, the oldest holder first (a later
-- duplicate, which nothing refused then, keeps its document but not the identifier).
INSERT INTO unique_identifier (res_type, system, value, res_key)
SELECT r.res_type,
       COALESCE(v.body::jsonb #>> '{masterIdentifier,system}', ''),
       v.body::jsonb #>> '{masterIdentifier,value}',
       r.res_key
FROM resource r
JOIN resource_version v ON v.res_key = r.res_key AND v.version = r.version
WHERE r.res_type = 'DocumentReference' AND NOT r.deleted
  AND v.body::jsonb #>> '{masterIdentifier,value}' IS NOT NULL
ORDER BY r.res_key
ON CONFLICT DO NOTHING;
