ALTER TABLE export_patient DROP COLUMN added;
ALTER TABLE export_job DROP COLUMN messages;
ALTER TABLE export_file DROP COLUMN kind;
