-- Nothing to do on SQLite, whose planner follows the statement's join order (CROSS JOIN) and
-- the `+` hints; the PostgreSQL migration of the same version creates extended statistics.
SELECT 1;
