//! The tables, as diesel sees them; identical on SQLite and PostgreSQL.
//! See `docs/database.md` for what each column means and why.

diesel::table! {
    resource (res_key) {
        res_key -> BigInt,
        res_type -> Text,
        res_id -> Text,
        version -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        patient -> Nullable<Text>,
    }
}

diesel::table! {
    resource_version (res_key, version) {
        res_key -> BigInt,
        version -> BigInt,
        res_type -> Text,
        res_id -> Text,
        last_updated -> BigInt,
        method -> Text,
        body -> Nullable<Text>,
    }
}

diesel::table! {
    resource_compartment (patient, res_key) {
        patient -> Text,
        res_key -> BigInt,
    }
}

diesel::joinable!(resource_version -> resource (res_key));
diesel::joinable!(resource_compartment -> resource (res_key));
diesel::allow_tables_to_appear_in_same_query!(resource, resource_version, resource_compartment);
