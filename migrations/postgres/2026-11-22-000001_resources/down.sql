DROP TABLE resource_compartment;
DROP TABLE resource_version;
DROP TABLE resource;
