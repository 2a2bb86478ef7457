DROP TABLE reindex_job;
