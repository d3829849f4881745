// Signed HTTP requests (spec/format-v1.md §11): RFC 9421 signatures over method, path,
// query and the RFC 9530 Content-Digest, for one named service (the audience), with a
// time and a fresh nonce. The page signs; the services verify (src/securecomm/httpsig.py).
// And signed answers (§11.4): the relay signs each answer for the request it answers; the
// page checks it against the relay's pinned key before it uses anything of it.

import { b64decode, b64encode, fromHex, randomBytes, sha256, toHex, utf8 } from "./bytes.js";
import * as canonical from "./canonical.js";
import {
  AnswerSignatureError,
  FieldError,
  FormatError,
  ParameterError,
  SignatureError,
  UnknownVersionError,
} from "./errors.js";
import { formatFingerprint } from "./identity.js";

const COMPONENTS = ["@method", "@path", "@query", "content-digest"];
const INNER_LIST = "(" + COMPONENTS.map((name) => `"${name}"`).join(" ") + ")";
const VISIBLE_ASCII = /^[\x21-\x7e]*$/;
const AUDIENCE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const NONCE = /^[0-9a-f]{32}$/;

/** 16 fresh random bytes in hex: a request's nonce, or an unsigned request's challenge. */
export function newNonce() {
  return toHex(randomBytes(16));
}

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
  nonce = nonce ?? newNonce();
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

// Signed answers (§11.4).

export const ANSWER_HEADER = "Securecomm-Answer-Signature";
export const ANSWER_NONCE_HEADER = "Securecomm-Answer-Nonce";
export const ANSWER_PURPOSE = "answer";
const ANSWER_MEMBERS = [
  "body_digest",
  "caller",
  "method",
  "nonce",
  "path",
  "query",
  "signature",
  "signer",
  "status",
  "time",
  "v",
];
const BINDING = ["method", "path", "query", "nonce", "caller"];
const FINGERPRINT = /^[0-9a-f]{64}$/;
const TIME_MAX_SECONDS = 2 ** 40;

const isInteger = (value, low, high) => Number.isInteger(value) && value >= low && value <= high;

/** The values of the answer-signature header of a fetch Response (fetch joins repeats with ", "). */
export function answerSignatures(headers) {
  const joined = headers.get(ANSWER_HEADER);
  return joined === null ? [] : joined.split(",").map((value) => value.trim());
}

// The statement in a header value, every member checked for its type (step 2).
function statementOf(value) {
  const obj = canonical.loads(b64decode(value, { field: ANSWER_HEADER }), { what: ANSWER_HEADER });
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new FieldError("answer: expected an object");
  if (obj.v !== 1) throw new UnknownVersionError("answer.v: expected 1");
  if (Object.keys(obj).sort().join(",") !== ANSWER_MEMBERS.join(","))
    throw new FieldError("answer: not exactly the members of spec section 11.4");
  const wrong = (name) => {
    throw new FieldError(`answer.${name}: not valid`);
  };
  if (typeof obj.signer !== "string" || !FINGERPRINT.test(obj.signer)) wrong("signer");
  for (const name of ["method", "path", "query"]) if (typeof obj[name] !== "string") wrong(name);
  if (obj.nonce !== null && (typeof obj.nonce !== "string" || !NONCE.test(obj.nonce)))
    wrong("nonce");
  if (obj.caller !== null && (typeof obj.caller !== "string" || !FINGERPRINT.test(obj.caller)))
    wrong("caller");
  if (!isInteger(obj.status, 100, 599)) wrong("status");
  b64decode(obj.body_digest, { field: "answer.body_digest", length: 32 });
  if (!isInteger(obj.time, 0, TIME_MAX_SECONDS)) wrong("time");
  b64decode(obj.signature, { field: "answer.signature", length: 64 });
  return obj;
}

/**
 * Check that `values` (every Securecomm-Answer-Signature the answer carried) is one
 * statement, signed by `signer` (the pinned PublicIdentity), of exactly this `status` and
 * `body` in answer to the request `binding` ({method, path, query, nonce, caller}); return
 * the statement, else throw AnswerSignatureError. The steps and order of spec §11.4, and
 * the same messages as src/securecomm/httpsig.py; none quotes a value from the answer.
 */
export async function verifyAnswer(signer, values, binding, { status, body, service = "relay" }) {
  const refuse = (message) => new AnswerSignatureError(service, message);
  if (values.length !== 1) {
    const given = values.length ? `carries ${values.length} headers` : "carries no";
    throw refuse(
      `its answer (HTTP ${status}) ${given} ${ANSWER_HEADER}: it is not signed by the ${service}`,
    );
  }
  let statement;
  try {
    statement = statementOf(values[0]);
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    throw refuse(`its answer's ${ANSWER_HEADER} is malformed (${error.name})`);
  }
  const pinned = signer.shortFingerprint();
  if (statement.signer !== signer.fingerprintHex) {
    const seen = formatFingerprint(fromHex(statement.signer, { field: "answer.signer" }));
    throw refuse(`its answer is signed by another key (${seen}), not the pinned ${pinned}`);
  }
  const { signature, ...unsigned } = statement;
  try {
    await signer.verify(
      b64decode(signature, { field: "answer.signature" }),
      ANSWER_PURPOSE,
      unsigned,
    );
  } catch (error) {
    if (!(error instanceof SignatureError)) throw error;
    throw refuse(`its answer's signature does not verify under its key (${pinned})`);
  }
  const differs = BINDING.filter((name) => statement[name] !== binding[name]);
  if (differs.length) {
    throw refuse(
      `its signed answer is for another request (its ${differs.join(", ")} differ${differs.length === 1 ? "s" : ""}): replayed, or the request was altered`,
    );
  }
  if (statement.status !== status)
    throw refuse(`its answer was signed as HTTP ${statement.status}, but came as ${status}`);
  if (statement.body_digest !== b64encode(await sha256(body)))
    throw refuse("the body of its answer is not the one it signed (altered on the way)");
  return statement;
}
