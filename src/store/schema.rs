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

diesel::table! {
    search_param (param_id) {
        param_id -> Integer,
        res_type -> Text,
        name -> Text,
        indexed -> Bool,
        definition -> Text,
    }
}

diesel::table! {
    search_string (res_key, param_id, grp, normalized, exact) {
        res_key -> BigInt,
        param_id -> Integer,
        grp -> Integer,
        normalized -> Text,
        exact -> Text,
    }
}

diesel::table! {
    search_token (res_key, param_id, grp, code, system) {
        res_key -> BigInt,
        param_id -> Integer,
        grp -> Integer,
        system -> Text,
        code -> Text,
    }
}

diesel::table! {
    search_reference (res_key, param_id, grp, target_type, target_id, url) {
        res_key -> BigInt,
        param_id -> Integer,
        grp -> Integer,
        target_type -> Text,
        target_id -> Text,
        url -> Text,
    }
}

diesel::table! {
    search_date (res_key, param_id, grp, low, high) {
        res_key -> BigInt,
        param_id -> Integer,
        grp -> Integer,
        low -> BigInt,
        high -> BigInt,
    }
}

diesel::table! {
    search_number (res_key, param_id, grp, low, high) {
        res_key -> BigInt,
        param_id -> Integer,
        grp -> Integer,
        low -> Double,
        high -> Double,
    }
}

diesel::table! {
    search_quantity (res_key, param_id, grp, code, system, low, high) {
        res_key -> BigInt,
        param_id -> Integer,
        grp -> Integer,
        low -> Double,
        high -> Double,
        system -> Text,
        code -> Text,
        canon_unit -> Text,
        canon_low -> Double,
        canon_high -> Double,
    }
}

diesel::table! {
    search_uri (res_key, param_id, grp, uri) {
        res_key -> BigInt,
        param_id -> Integer,
        grp -> Integer,
        uri -> Text,
    }
}

diesel::table! {
    server_key (name) {
        name -> Text,
        key -> Binary,
    }
}

diesel::table! {
    export_job (id) {
        id -> Text,
        owner -> Nullable<Text>,
        scope -> Nullable<Text>,
        level -> Text,
        group_id -> Nullable<Text>,
        request -> Text,
        types -> Text,
        type_filters -> Text,
        since -> Nullable<BigInt>,
        output_format -> Text,
        transaction_time -> BigInt,
        status -> Text,
        created -> BigInt,
        finished -> Nullable<BigInt>,
        error -> Nullable<Text>,
        messages -> Text,
    }
}

diesel::table! {
    export_progress (job_id) {
        job_id -> Text,
        type_index -> Integer,
        type_total -> Nullable<BigInt>,
        type_done -> BigInt,
        after_key -> BigInt,
        file_part -> Integer,
        file_count -> BigInt,
        file_bytes -> BigInt,
        exported -> BigInt,
    }
}

diesel::joinable!(export_progress -> export_job (job_id));
diesel::allow_tables_to_appear_in_same_query!(export_job, export_progress);

diesel::table! {
    export_file (job_id, seq) {
        job_id -> Text,
        seq -> Integer,
        res_type -> Text,
        name -> Text,
        count -> BigInt,
        bytes -> BigInt,
        kind -> Text,
    }
}

diesel::table! {
    export_patient (job_id, patient) {
        job_id -> Text,
        patient -> Text,
        added -> Bool,
    }
}

diesel::table! {
    import_progress (source) {
        source -> Text,
        size -> BigInt,
        modified -> BigInt,
        committed_bytes -> BigInt,
        committed_lines -> BigInt,
        done -> Bool,
        updated -> BigInt,
    }
}

diesel::table! {
    reindex_job (id) {
        id -> Text,
        types -> Text,
        status -> Text,
        total -> BigInt,
        done -> BigInt,
        created -> BigInt,
        updated -> BigInt,
        finished -> Nullable<BigInt>,
        message -> Nullable<Text>,
    }
}

diesel::table! {
    unique_identifier (res_type, system, value) {
        res_type -> Text,
        system -> Text,
        value -> Text,
        res_key -> BigInt,
    }
}

diesel::table! {
    oauth_client (client_id) {
        client_id -> Text,
        kind -> Text,
        name -> Text,
        secret_sha256 -> Nullable<Binary>,
        jwks -> Nullable<Text>,
        jwks_url -> Nullable<Text>,
        redirect_uris -> Text,
        scopes -> Text,
        created -> BigInt,
    }
}

diesel::table! {
    auth_grant (jti) {
        jti -> Text,
        client_id -> Text,
        subject -> Text,
        fhir_user -> Nullable<Text>,
        patient -> Nullable<Text>,
        scope -> Text,
        issued -> BigInt,
        expires -> BigInt,
        revoked -> Nullable<BigInt>,
        origin -> Nullable<Text>,
    }
}

diesel::table! {
    auth_request (id) {
        id -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        state -> Nullable<Text>,
        nonce -> Nullable<Text>,
        code_challenge -> Text,
        provider -> Nullable<Text>,
        upstream_verifier -> Nullable<Text>,
        upstream_nonce -> Nullable<Text>,
        subject -> Nullable<Text>,
        fhir_user -> Nullable<Text>,
        patient -> Nullable<Text>,
        code_sha256 -> Nullable<Binary>,
        code_used -> Nullable<BigInt>,
        expires -> BigInt,
    }
}

diesel::table! {
    refresh_token (token_sha256) {
        token_sha256 -> Binary,
        client_id -> Text,
        subject -> Text,
        fhir_user -> Nullable<Text>,
        patient -> Nullable<Text>,
        scope -> Text,
        issued -> BigInt,
        expires -> BigInt,
        used -> Nullable<BigInt>,
        revoked -> Nullable<BigInt>,
        family -> Text,
    }
}

diesel::table! {
    client_assertion (client_id, jti) {
        client_id -> Text,
        jti -> Text,
        expires -> BigInt,
    }
}
