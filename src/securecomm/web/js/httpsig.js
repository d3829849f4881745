// Signed HTTP requests (spec/format-v1.md §11): RFC 9421 signatures over method, path,
// query and the RFC 9530 Content-Digest, for one named service (the audience), with a
// time and a fresh nonce. The page signs; the services verify (src/securecomm/httpsig.py).

import { b64encode, randomBytes, sha256, toHex, utf8 } from "./bytes.js";
import * as canonical from "./canonical.js";
import { ParameterError } from "./errors.js";

const COMPONENTS = ["@method", "@path", "@query", "content-digest"];
const INNER_LIST = "(" + COMPONENTS.map((name) => `"${name}"`).join(" ") + ")";
const VISIBLE_ASCII = /^[\x21-\x7e]*$/;
const AUDIENCE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const NONCE = /^[0-9a-f]{32}$/;

/** The Content-Digest field value of a body: `sha-256=:<base64>:`. */
export async function contentDigest(body) {
  return `sha-256=:${b64encode(await sha256(body))}:`;
}

/** The exact bytes signed (§11.2): five lines joined by LF. */
export function signatureBase(method, path, query, digest, params) {
  const values = [method, path, "?" + query, digest];
  const lines = COMPONENTS.map((name, i) => `"${name}": ${values[i]}`);
  lines.push(`"@signature-params": ${params}`);
  return utf8(lines.join("\n"));
}

/**
 * The four headers of a signed request.
 * @param identity an Identity (identity.js) holding the Ed25519 private key
 * @param opts {method, path, query, body (Uint8Array), audience, now?, nonce?}
 */
export async function signRequest(
  identity,
  { method, path, query = "", body, audience, now, nonce },
) {
  method = method.toUpperCase();
  for (const value of [method, path, query]) {
    if (!VISIBLE_ASCII.test(value)) {
      throw new ParameterError("request method, path and query: only visible ASCII is allowed");
    }
  }
  if (!path.startsWith("/")) throw new ParameterError("request path: must start with '/'");
  if (!AUDIENCE.test(audience)) throw new ParameterError("audience: not a valid service name");
  nonce = nonce ?? toHex(randomBytes(16));
  if (!NONCE.test(nonce)) throw new ParameterError("nonce: expected 32 lowercase hex digits");
  const created = now ?? Math.floor(Date.now() / 1000);
  if (created < 0) throw new ParameterError(`created: ${created} is negative`);
  const params =
    `${INNER_LIST};created=${created};nonce="${nonce}"` +
    `;keyid="${identity.public.fingerprintHex}";alg="ed25519"` +
    `;tag="securecomm/v1/${audience}"`;
  const digest = await contentDigest(body ?? new Uint8Array(0));
  const signature = await identity.signBytes(signatureBase(method, path, query, digest, params));
  return {
    "Content-Digest": digest,
    "Signature-Input": `sig1=${params}`,
    Signature: `sig1=:${b64encode(signature)}:`,
    "Securecomm-Identity": b64encode(canonical.dumps(identity.public.toJson())),
  };
}
