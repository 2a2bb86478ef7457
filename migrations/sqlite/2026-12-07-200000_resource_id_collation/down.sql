-- Nothing to do on SQLite, which compares texts bytewise (BINARY) everywhere; the
-- PostgreSQL migration of the same version makes `resource.res_type`/`res_id` "C" there.
SELECT 1;
