DROP TABLE refresh_token;
DROP TABLE auth_request;
DROP TABLE client_assertion;
DROP TABLE auth_grant;
DROP TABLE oauth_client;
