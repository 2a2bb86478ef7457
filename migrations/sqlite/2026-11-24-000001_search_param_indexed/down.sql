ALTER TABLE search_param DROP COLUMN indexed;
