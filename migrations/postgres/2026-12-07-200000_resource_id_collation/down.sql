ALTER TABLE resource
    ALTER COLUMN res_type TYPE TEXT COLLATE "default",
    ALTER COLUMN res_id TYPE TEXT COLLATE "default";
