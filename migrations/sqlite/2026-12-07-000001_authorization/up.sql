-- Authorization (docs/authorization.md): the clients an operator registered, every access
-- token issued (its grant, kept server-side so that a revocation takes effect on the next
-- request on every node), and the client assertions already used (replays are refused).

CREATE TABLE oauth_client (
    client_id     TEXT   PRIMARY KEY,
    -- public | confidential | asymmetric | backend
    kind          TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    -- SHA-256 of the secret (confidential clients); the secret itself is shown once.
    secret_sha256 BLOB,
    -- The client's public keys, as a JWKS document or where to fetch it.
    jwks          TEXT,
    jwks_url      TEXT,
    -- JSON array of exact redirect URIs.
    redirect_uris TEXT   NOT NULL,
    -- The scopes the client may ask for, space-separated (wildcards allowed).
    scopes        TEXT   NOT NULL,
    created       BIGINT NOT NULL
);

CREATE TABLE auth_grant (
    jti       TEXT   PRIMARY KEY,
    client_id TEXT   NOT NULL,
    subject   TEXT   NOT NULL,
    fhir_user TEXT,
    patient   TEXT,
    scope     TEXT   NOT NULL,
    issued    BIGINT NOT NULL,
    expires   BIGINT NOT NULL,
    revoked   BIGINT
);
CREATE INDEX auth_grant_expires ON auth_grant (expires);

CREATE TABLE client_assertion (
    client_id TEXT   NOT NULL,
    jti       TEXT   NOT NULL,
    expires   BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
