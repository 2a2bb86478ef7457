DROP TABLE export_patient;
DROP TABLE export_file;
DROP TABLE export_progress;
DROP TABLE export_job;
