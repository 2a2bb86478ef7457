// Upstream identity providers for Carnet's sign-in tests, run by a certified OpenID Provider
// nobody here wrote (npm oidc-provider):
//   - a Pro Santé Connect look-alike at /auth/realms/esante-wallet, whose discovery document is
//     also served at PSC's non-standard path (.well-known/wallet-openid-configuration), and
//     whose professionals carry PSC's claims (SubjectNameID, SubjectRole...) in the id_token;
//   - a patients' provider at /patients, whose INS claim comes only from userinfo.
// Usage: node provider.mjs PORT CARNET_CALLBACK_URL. Prints one JSON line when listening.
import http from "node:http";
import Provider from "oidc-provider";

const [port, callback] = process.argv.slice(2);
if (!port || !callback) {
  console.error("usage: node provider.mjs PORT CARNET_CALLBACK_URL");
  process.exit(2);
}
const root = `http://127.0.0.1:${port}`;

// Accounts: the login name typed on the dev sign-in form is the account id.
const accounts = {
  // A physician (profession 10), national identifier 8 + RPPS.
  "899700218896": {
    SubjectNameID: "899700218896",
    given_name: "Camille",
    family_name: "Martin",
    SubjectRole: ["10^1.2.250.1.213.1.1.5.5"],
  },
  // A nurse whose identifier no Practitioner holds, for servers without auto-provisioning.
  "899700300001": { SubjectNameID: "899700300001", family_name: "Petit" },
  // Patients, by INS.
  "patient-alice": { ins: "2850399000001", given_name: "Alice", family_name: "Durand" },
  "patient-unknown": { ins: "1990199000009", family_name: "Inconnu" },
};

function provider(issuer, { claims, conform }) {
  return new Provider(issuer, {
    clients: [
      {
        client_id: "carnet",
        client_secret: "carnet-test-secret",
        redirect_uris: [callback],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    async findAccount(ctx, id) {
      if (!accounts[id]) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
    },
    claims,
    conformIdTokenClaims: conform,
    acrValues: ["eidas1"],
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ["carnet-conformance-only"] },
    pkce: { required: () => true },
  });
}

const mounts = [
  {
    prefix: "/auth/realms/esante-wallet",
    provider: provider(`${root}/auth/realms/esante-wallet`, {
      claims: { openid: ["sub"], scope_all: ["SubjectNameID", "SubjectRole", "given_name", "family_name"] },
      conform: false,
    }),
  },
  {
    prefix: "/patients",
    provider: provider(`${root}/patients`, {
      claims: { openid: ["sub"], ins: ["ins", "given_name", "family_name"] },
      conform: true,
    }),
  },
];
for (const m of mounts) {
  m.provider.proxy = false;
  m.handle = m.provider.callback();
}

http
  .createServer((req, res) => {
    for (const m of mounts) {
      if (req.url === m.prefix || req.url.startsWith(`${m.prefix}/`) || req.url.startsWith(`${m.prefix}?`)) {
        let rest = req.url.slice(m.prefix.length) || "/";
        // Pro Santé Connect's own discovery path.
        if (rest.startsWith("/.well-known/wallet-openid-configuration")) {
          rest = "/.well-known/openid-configuration";
        }
        // oidc-provider finds its mount point by comparing the two.
        req.originalUrl = m.prefix + rest;
        req.url = rest;
        return m.handle(req, res);
      }
    }
    res.writeHead(404).end("not found");
  })
  .listen(Number(port), "127.0.0.1", () => {
    console.log(JSON.stringify({ listening: root }));
  });
