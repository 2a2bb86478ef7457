-- Authorization (docs/authorization.md): the clients an operator registered, every access
-- token issued (its grant, kept server-side so that a revocation takes effect on the next
-- request on every node), the client assertions already used (replays are refused), the
-- authorization requests in progress (sign-in, then a one-time code), refresh tokens, and
-- the sessions of people managing the apps they authorised.

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
    revoked   BIGINT,
    -- The authorization request (code) or refresh token it came from, so that a replayed
    -- code or refresh token revokes what it gave.
    origin    TEXT
);
CREATE INDEX auth_grant_expires ON auth_grant (expires);
CREATE INDEX auth_grant_origin ON auth_grant (origin);

CREATE TABLE client_assertion (
    client_id TEXT   NOT NULL,
    jti       TEXT   NOT NULL,
    expires   BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE auth_request (
    id                TEXT   PRIMARY KEY,
    client_id         TEXT   NOT NULL,
    redirect_uri      TEXT   NOT NULL,
    -- What the client asked for, within what it may have.
    scope             TEXT   NOT NULL,
    state             TEXT,
    nonce             TEXT,
    code_challenge    TEXT   NOT NULL,
    -- The upstream sign-in: which provider, and the PKCE verifier and nonce sent to it.
    provider          TEXT,
    upstream_verifier TEXT,
    upstream_nonce    TEXT,
    -- Who signed in, as FHIR sees them, and the patient in context.
    subject           TEXT,
    fhir_user         TEXT,
    patient           TEXT,
    -- The one-time code handed to the client (SHA-256), and when it was used.
    code_sha256       BLOB,
    code_used         BIGINT,
    expires           BIGINT NOT NULL
);
CREATE UNIQUE INDEX auth_request_code ON auth_request (code_sha256);

CREATE TABLE refresh_token (
    token_sha256 BLOB PRIMARY KEY,
    client_id    TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    fhir_user    TEXT,
    patient      TEXT,
    scope        TEXT   NOT NULL,
    issued       BIGINT NOT NULL,
    expires      BIGINT NOT NULL,
    -- Rotated: a refresh token is used once; a second use revokes the whole family.
    used         BIGINT,
    revoked      BIGINT,
    family       TEXT   NOT NULL
);
CREATE INDEX refresh_token_subject ON refresh_token (subject, client_id);
CREATE INDEX refresh_token_family ON refresh_token (family);
