-- Bulk export, Bulk Data 2.0's optional parts (docs/bulk-export.md):
-- what each finished file holds: 'output' (resources), 'deleted' (transaction Bundles of
-- DELETE entries, with _since) or 'error' (OperationOutcomes);
ALTER TABLE export_file ADD COLUMN kind TEXT NOT NULL DEFAULT 'output';
-- the kick-off's warnings (what Prefer: handling=lenient ignored), a JSON array of texts,
-- written to the job's error file;
ALTER TABLE export_job ADD COLUMN messages TEXT NOT NULL DEFAULT '[]';
-- Group members that joined the Group after _since: their whole compartment is exported.
ALTER TABLE export_patient ADD COLUMN added BOOLEAN NOT NULL DEFAULT 0;
