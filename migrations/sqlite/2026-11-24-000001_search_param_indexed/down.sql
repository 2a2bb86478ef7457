ALTER TABLE search_param DROP COLUMN definition;
ALTER TABLE search_param DROP COLUMN indexed;
