DROP TABLE unique_identifier;
