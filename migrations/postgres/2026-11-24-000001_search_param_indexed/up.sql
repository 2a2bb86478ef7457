-- A key registered (or redefined) after resources of its type were stored, such as one of a
-- SearchParameter added at run time, is not searchable until those resources are reindexed.
ALTER TABLE search_param ADD COLUMN indexed BOOLEAN NOT NULL DEFAULT TRUE;
-- A fingerprint of the definition the key's rows were extracted from ('' before this column).
ALTER TABLE search_param ADD COLUMN definition TEXT NOT NULL DEFAULT '';
