-- A key registered after resources of its type were stored (a SearchParameter added at run
-- time) is not searchable until those resources are reindexed.
ALTER TABLE search_param ADD COLUMN indexed BOOLEAN NOT NULL DEFAULT TRUE;
