// Key files (spec §6.4): "securecomm-identity: NAME", then the Ed25519 and
// the X25519 private key as PKCS#8 PEM blocks, each either a PrivateKeyInfo
// or an EncryptedPrivateKeyInfo with PBES2 (PBKDF2-HMAC-SHA256, 600000
// iterations, AES-256-CBC), written from the same DER template as
// src/securecomm/identity.py. Includes the minimal DER reader/writer and
// PEM helpers this needs, and the name check of §1.6.

import { b64decode, b64encode, concat, fromHex, randomBytes, toHex, utf8 } from "./bytes.js";
import { FieldError, FormatError, IdentityError, ParameterError } from "./errors.js";

export const PASSPHRASE_ITERATIONS = 600000;
const SALT_LENGTH_BYTES = 16;
const IV_LENGTH_BYTES = 16;
const PRIVATE_KEY_LENGTH_BYTES = 32;
const FILE_HEADER = "securecomm-identity: ";
const PEM_LINE_LENGTH = 64;

// Names (§1.6)

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

// Return `name` if it is a party name: 1-64 of a-z 0-9 . _ -, from a letter or digit.
export function checkName(name, { field = "name" } = {}) {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new FieldError(
      `${field}: ${JSON.stringify(name) ?? String(name)} is not a valid name` +
        " (1-64 characters: a-z, 0-9, '.', '_', '-'; starting with a letter or digit)",
    );
  }
  return name;
}

// What to change in `text`, typed as a new name, to make it one (checkName's rule, said to
// a person, with the name to try when only capitals or spaces are wrong), or null if it is a
// name. Empty text is null too: the field's `required` says that.
export function nameAdvice(text) {
  if (text === "" || NAME.test(text)) return null;
  const upper = text !== text.toLowerCase();
  const tried = text.trim().toLowerCase().replace(/\s+/g, "-");
  if (NAME.test(tried)) {
    const spaced = /\s/.test(text);
    const rule = !spaced
      ? "Names are lower-case"
      : upper
        ? "Names are lower-case, with no spaces"
        : "Names have no spaces";
    return `${rule}: try “${tried}”.`;
  }
  const banned = [...new Set(tried)].filter((ch) => !/[a-z0-9._-]/.test(ch));
  let why;
  if (banned.length) {
    const listed = banned.map((ch) => `“${ch}”`);
    const last = listed.pop();
    why = `A name cannot hold ${listed.length ? `${listed.join(", ")} or ${last}` : last}.`;
  } else if (!tried) why = "A name cannot be only spaces.";
  else if (tried.length > 64) why = `This name has ${tried.length} characters, and 64 is the most.`;
  else why = `A name cannot start with “${tried[0]}”.`;
  return `${upper ? "Names are lower-case. " : ""}${why} Only a-z, 0-9, “.”, “-” and “_”, starting with a letter or digit.`;
}

// What a name may hold besides letters and digits; a name is read without them at a glance.
const NAME_SEPARATORS = "._-";
// What a reader takes for what at a glance, applied in this order (identity.py NAME_LOOKALIKES).
const NAME_LOOKALIKES = [
  ["0", "o"],
  ["1", "l"],
  ["rn", "m"],
  ["vv", "w"],
  ["cl", "d"],
];
const LOOKALIKE_TEXT = NAME_LOOKALIKES.map(([seen, read]) => `${seen} for ${read}`).join(", ");

// `name` read as at a glance: without its separators, each look-alike read as the letter it
// looks like. Two names with the same skeleton look alike (spec §14.6).
export function nameSkeleton(name) {
  let skeleton = [...name].filter((ch) => !NAME_SEPARATORS.includes(ch)).join("");
  for (const [seen, read] of NAME_LOOKALIKES) skeleton = skeleton.replaceAll(seen, read);
  return skeleton;
}

// Why a person may not register `name` (a valid name) beside the names `taken`, or null:
// identity.py new_name_refusal, for new names only (checkName takes every name made before).
export function newNameRefusal(name, taken = []) {
  const last = name.at(-1);
  if (NAME_SEPARATORS.includes(last))
    return `${name} ends in “${last}”, which a reader misses: a name must end with a letter or digit`;
  const skeleton = nameSkeleton(name);
  const other = [...taken].sort().find((o) => o !== name && nameSkeleton(o) === skeleton);
  if (other !== undefined)
    return `${name} looks like ${other}, a name taken already (they differ only in “.”, “-” or “_”, or in ${LOOKALIKE_TEXT}): a sender could pick one for the other`;
  return null;
}

// DER (X.690), the little of it PKCS#8 needs

const TAG = {
  INTEGER: 0x02,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
  ATTRIBUTES: 0xa0, // [0] IMPLICIT, constructed (OneAsymmetricKey.attributes)
  PUBLIC_KEY: 0x81, // [1] IMPLICIT BIT STRING (OneAsymmetricKey.publicKey)
};

// Object identifiers, as the hex of their DER content.
const OID = {
  PBES2: "2a864886f70d01050d", // 1.2.840.113549.1.5.13
  PBKDF2: "2a864886f70d01050c", // 1.2.840.113549.1.5.12
  HMAC_SHA256: "2a864886f70d0209", // 1.2.840.113549.2.9
  AES256_CBC: "60864801650304012a", // 2.16.840.1.101.3.4.1.42
  ED25519: "2b6570", // 1.3.101.112 (RFC 8410)
  X25519: "2b656e", // 1.3.101.110 (RFC 8410)
};
const ALGORITHMS = new Map([
  [OID.ED25519, "Ed25519"],
  [OID.X25519, "X25519"],
]);

export function der(tag, content) {
  const length = content.length;
  let header;
  if (length < 0x80) {
    header = Uint8Array.of(tag, length);
  } else {
    const octets = [];
    for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) {
      octets.unshift(rest % 256);
    }
    header = Uint8Array.of(tag, 0x80 | octets.length, ...octets);
  }
  return concat(header, content);
}

// A non-negative INTEGER in its shortest two's-complement form.
export function derInteger(value) {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ParameterError(`DER: ${value} is not a non-negative integer`);
  }
  const octets = [];
  for (let rest = value; rest > 0; rest = Math.floor(rest / 256)) {
    octets.unshift(rest % 256);
  }
  if (octets.length === 0 || octets[0] & 0x80) {
    octets.unshift(0);
  }
  return der(TAG.INTEGER, Uint8Array.from(octets));
}

function derOid(hex) {
  return der(TAG.OID, fromHex(hex));
}

function derError(reason) {
  return new FormatError(`DER: ${reason}`);
}

// Reads the elements of one DER value (or of a constructed value's content) in order.
export class DerReader {
  constructor(data) {
    this.data = data;
    this.pos = 0;
  }

  atEnd() {
    return this.pos === this.data.length;
  }

  peekTag() {
    return this.atEnd() ? null : this.data[this.pos];
  }

  // The content of the next element, which must have tag `expected`.
  read(expected) {
    const { data } = this;
    if (this.pos + 2 > data.length) {
      throw derError("truncated");
    }
    const tag = data[this.pos];
    if (tag !== expected) {
      throw derError(`tag 0x${tag.toString(16)}, expected 0x${expected.toString(16)}`);
    }
    let length = data[this.pos + 1];
    let start = this.pos + 2;
    if (length & 0x80) {
      const count = length & 0x7f;
      if (count === 0 || count > 4 || start + count > data.length) {
        throw derError("indefinite or oversized length");
      }
      length = 0;
      for (const octet of data.subarray(start, start + count)) {
        length = length * 256 + octet;
      }
      if (data[start] === 0 || length < 0x80) {
        throw derError("length not in its shortest form");
      }
      start += count;
    }
    if (start + length > data.length) {
      throw derError("truncated");
    }
    this.pos = start + length;
    return data.subarray(start, start + length);
  }

  sequence() {
    return new DerReader(this.read(TAG.SEQUENCE));
  }

  oid() {
    return toHex(this.read(TAG.OID));
  }

  octetString() {
    return this.read(TAG.OCTET_STRING);
  }

  // A non-negative INTEGER up to 2^32 - 1.
  smallInteger() {
    const content = this.read(TAG.INTEGER);
    if (content.length === 0 || content[0] & 0x80) {
      throw derError("negative or empty integer");
    }
    if (content.length > 1 && content[0] === 0 && !(content[1] & 0x80)) {
      throw derError("integer not in its shortest form");
    }
    let value = 0;
    for (const octet of content) {
      value = value * 256 + octet;
    }
    if (value > 0xffffffff) {
      throw derError("integer too large");
    }
    return value;
  }

  finish() {
    if (!this.atEnd()) {
      throw derError("trailing data");
    }
  }
}

// PKCS#8 PrivateKeyInfo for Ed25519 and X25519 (RFC 8410)

function requireBytes(value, what) {
  if (!(value instanceof Uint8Array)) {
    throw new ParameterError(`${what} must be a Uint8Array`);
  }
}

// The PrivateKeyInfo that pyca and WebCrypto write: version 0, no
// parameters, no attributes, no public key.
// For X25519: 302e020100300506032b656e04220420 || the 32 private bytes.
export function privateKeyInfo(algorithm, privateRaw) {
  requireBytes(privateRaw, "private key");
  const oid = [...ALGORITHMS].find(([, name]) => name === algorithm)?.[0];
  if (oid === undefined || privateRaw.length !== PRIVATE_KEY_LENGTH_BYTES) {
    throw new ParameterError(`PKCS#8: no ${algorithm} private key of 32 bytes`);
  }
  return der(
    TAG.SEQUENCE,
    concat(
      derInteger(0),
      der(TAG.SEQUENCE, derOid(oid)),
      der(TAG.OCTET_STRING, der(TAG.OCTET_STRING, privateRaw)),
    ),
  );
}

// Read a PrivateKeyInfo / OneAsymmetricKey (RFC 5958): {algorithm, privateRaw}.
// `algorithm` is "Ed25519", "X25519", or "OID <hex>" for any other key.
export function parsePrivateKeyInfo(data) {
  requireBytes(data, "PKCS#8");
  const outer = new DerReader(data);
  const info = outer.sequence();
  outer.finish();
  const version = info.smallInteger();
  if (version > 1) {
    throw derError(`PKCS#8 version ${version}`);
  }
  const algorithmId = info.sequence();
  const oid = algorithmId.oid();
  const algorithm = ALGORITHMS.get(oid);
  if (algorithm === undefined) {
    return { algorithm: `OID ${oid}`, privateRaw: null };
  }
  algorithmId.finish(); // RFC 8410: parameters absent
  const wrapped = new DerReader(info.octetString());
  const privateRaw = wrapped.octetString();
  wrapped.finish();
  if (privateRaw.length !== PRIVATE_KEY_LENGTH_BYTES) {
    throw derError(`${algorithm} private key of ${privateRaw.length} bytes`);
  }
  if (info.peekTag() === TAG.ATTRIBUTES) {
    info.read(TAG.ATTRIBUTES);
  }
  if (info.peekTag() === TAG.PUBLIC_KEY) {
    info.read(TAG.PUBLIC_KEY);
  }
  info.finish();
  return { algorithm, privateRaw: privateRaw.slice() };
}

// The canonical PrivateKeyInfo of `data` if it holds a key of `algorithm`.
export function normalizePkcs8(data, algorithm) {
  let parsed;
  try {
    parsed = parsePrivateKeyInfo(data);
  } catch {
    throw new IdentityError(`PKCS#8: not a readable ${algorithm} private key`);
  }
  if (parsed.algorithm !== algorithm) {
    throw new IdentityError(`PKCS#8: expected an ${algorithm} key, got ${parsed.algorithm}`);
  }
  return privateKeyInfo(algorithm, parsed.privateRaw);
}

// The raw 32-byte public key of an extractable Ed25519 or X25519 private
// CryptoKey: its JWK "x" member (RFC 8037), base64url without padding.
export async function rawPublicKey(privateKey) {
  const { x } = await crypto.subtle.exportKey("jwk", privateKey);
  const standard = x.replace(/-/g, "+").replace(/_/g, "/");
  const padded = standard + "=".repeat((4 - (standard.length % 4)) % 4);
  return b64decode(padded, { field: "JWK x", length: PRIVATE_KEY_LENGTH_BYTES });
}

// PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 and AES-256-CBC

async function keyEncryptionKey(passphrase, salt, iterations, usage) {
  const material = await crypto.subtle.importKey("raw", passphrase, "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    material,
    256,
  );
  return crypto.subtle.importKey("raw", bits, { name: "AES-CBC" }, false, [usage]);
}

// EncryptedPrivateKeyInfo around `pkcs8`, in the layout identity.py writes.
export async function encryptPrivateKeyInfo(pkcs8, passphrase, iterations = PASSPHRASE_ITERATIONS) {
  const salt = randomBytes(SALT_LENGTH_BYTES);
  const iv = randomBytes(IV_LENGTH_BYTES);
  const kek = await keyEncryptionKey(passphrase, salt, iterations, "encrypt");
  // WebCrypto's AES-CBC pads with PKCS#7 to 16 bytes.
  const encrypted = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-CBC", iv }, kek, pkcs8),
  );
  const pbkdf2Parameters = der(
    TAG.SEQUENCE,
    concat(
      der(TAG.OCTET_STRING, salt),
      derInteger(iterations),
      der(TAG.SEQUENCE, concat(derOid(OID.HMAC_SHA256), der(TAG.NULL, new Uint8Array(0)))),
    ),
  );
  const pbes2Parameters = der(
    TAG.SEQUENCE,
    concat(
      der(TAG.SEQUENCE, concat(derOid(OID.PBKDF2), pbkdf2Parameters)),
      der(TAG.SEQUENCE, concat(derOid(OID.AES256_CBC), der(TAG.OCTET_STRING, iv))),
    ),
  );
  return der(
    TAG.SEQUENCE,
    concat(
      der(TAG.SEQUENCE, concat(derOid(OID.PBES2), pbes2Parameters)),
      der(TAG.OCTET_STRING, encrypted),
    ),
  );
}

function expectOid(reader, oid, what) {
  const found = reader.oid();
  if (found !== oid) {
    throw derError(`${what}: unsupported algorithm ${found}`);
  }
}

// The parameters of an EncryptedPrivateKeyInfo: only PBES2 with
// PBKDF2-HMAC-SHA256 and AES-256-CBC, the scheme of §6.4.
function readEncryptedPrivateKeyInfo(data) {
  const outer = new DerReader(data);
  const info = outer.sequence();
  outer.finish();
  const algorithm = info.sequence();
  expectOid(algorithm, OID.PBES2, "key encryption");
  const pbes2 = algorithm.sequence();
  algorithm.finish();
  const kdf = pbes2.sequence();
  expectOid(kdf, OID.PBKDF2, "key derivation");
  const pbkdf2 = kdf.sequence();
  kdf.finish();
  const salt = pbkdf2.octetString();
  const iterations = pbkdf2.smallInteger();
  if (iterations < 1) {
    throw derError("PBKDF2 iteration count 0");
  }
  if (pbkdf2.peekTag() === TAG.INTEGER && pbkdf2.smallInteger() !== 32) {
    throw derError("PBKDF2 key length is not 32");
  }
  // An absent PRF means HMAC-SHA1 (RFC 8018), which §6.4 does not use.
  const prf = pbkdf2.sequence();
  expectOid(prf, OID.HMAC_SHA256, "PBKDF2 PRF");
  if (!prf.atEnd()) {
    prf.read(TAG.NULL);
  }
  prf.finish();
  pbkdf2.finish();
  const cipher = pbes2.sequence();
  expectOid(cipher, OID.AES256_CBC, "key cipher");
  const iv = cipher.octetString();
  cipher.finish();
  pbes2.finish();
  if (iv.length !== IV_LENGTH_BYTES) {
    throw derError("AES-CBC IV is not 16 bytes");
  }
  const encrypted = info.octetString();
  info.finish();
  return { salt, iterations, iv, encrypted };
}

export async function decryptPrivateKeyInfo(data, passphrase) {
  const { salt, iterations, iv, encrypted } = readEncryptedPrivateKeyInfo(data);
  const kek = await keyEncryptionKey(passphrase, salt, iterations, "decrypt");
  // Throws on bad padding, which is what a wrong passphrase usually gives.
  return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv }, kek, encrypted));
}

// PEM (RFC 7468)

const LABEL_PLAIN = "PRIVATE KEY";
const LABEL_ENCRYPTED = "ENCRYPTED PRIVATE KEY";
// As identity.py: a block whose END label differs from its BEGIN label is not a block.
const PEM_BLOCK = /-----BEGIN ((?:ENCRYPTED )?PRIVATE KEY)-----\r?\n([\s\S]*?)-----END \1-----/g;

export function pemEncode(label, data) {
  const body = b64encode(data);
  const lines = [];
  for (let i = 0; i < body.length; i += PEM_LINE_LENGTH) {
    lines.push(body.slice(i, i + PEM_LINE_LENGTH));
  }
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// The private key blocks of `text`, in order: [{label, body}].
export function pemBlocks(text) {
  return [...text.matchAll(PEM_BLOCK)].map((match) => ({ label: match[1], body: match[2] }));
}

// Whether the private key blocks of `text` are all encrypted (a passphrase opens them).
export function keyFileEncrypted(text) {
  const blocks = typeof text === "string" ? pemBlocks(text) : [];
  return blocks.length > 0 && blocks.every((block) => block.label === LABEL_ENCRYPTED);
}

// The DER inside a PEM body: base64 lines (LF or CRLF), nothing else.
export function pemBodyBytes(body) {
  const joined = body
    .replace(/\r?\n$/, "")
    .split(/\r?\n/)
    .join("");
  return b64decode(joined, { field: "PEM block" });
}

// Key files

function passphraseBytes(passphrase) {
  if (passphrase === null || passphrase === undefined) {
    return null;
  }
  if (typeof passphrase === "string") {
    return utf8(passphrase);
  }
  if (passphrase instanceof Uint8Array) {
    return passphrase;
  }
  throw new ParameterError("key file: the passphrase must be a string, bytes or null");
}

// The text of a key file. A null passphrase writes unencrypted blocks.
export async function writeKeyFile(name, ed25519Pkcs8, x25519Pkcs8, passphrase) {
  checkName(name);
  const keys = [normalizePkcs8(ed25519Pkcs8, "Ed25519"), normalizePkcs8(x25519Pkcs8, "X25519")];
  const secret = passphraseBytes(passphrase);
  let blocks;
  if (secret === null) {
    blocks = keys.map((key) => pemEncode(LABEL_PLAIN, key));
  } else {
    if (secret.length === 0) {
      throw new IdentityError("key file: the passphrase is empty");
    }
    const wrapped = await Promise.all(keys.map((key) => encryptPrivateKeyInfo(key, secret)));
    blocks = wrapped.map((info) => pemEncode(LABEL_ENCRYPTED, info));
  }
  return FILE_HEADER + name + "\n" + blocks.join("");
}

// The name in `text` if it is a .pub file (identity.py public_file: a public identity as
// canonical JSON), "" if its name is not one, else null: the file keygen writes beside
// NAME.key, and what a person picks by mistake for it.
export function publicFileName(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const keys = value !== null && typeof value === "object" && !Array.isArray(value);
  if (!keys || typeof value.sign !== "string" || typeof value.kem !== "string") return null;
  return typeof value.name === "string" && NAME.test(value.name) ? value.name : "";
}

// The header line's name, with the checks of §6.4.
function readHeader(text) {
  const newline = text.indexOf("\n");
  const firstLine = newline === -1 ? text : text.slice(0, newline);
  // A first line that is not ASCII cannot be a header (identity.py reads it as "").
  const header = /^[\x00-\x7f]*$/.test(firstLine) ? firstLine.replace(/\r+$/, "") : "";
  if (!header.startsWith(FILE_HEADER)) {
    const pub = publicFileName(text);
    if (pub !== null) {
      const name = pub || "NAME";
      throw new IdentityError(
        `key file: this is a public key file (${name}.pub), which holds no private key: import ${name}.key instead, the file written beside it`,
      );
    }
    throw new IdentityError(`key file: does not start with '${FILE_HEADER}'`);
  }
  return checkName(header.slice(FILE_HEADER.length), { field: "key file name" });
}

async function readBlock(block, secret) {
  let data = pemBodyBytes(block.body);
  if (block.label === LABEL_ENCRYPTED) {
    data = await decryptPrivateKeyInfo(data, secret);
  }
  return parsePrivateKeyInfo(data);
}

// Read a key file: {name, ed25519Pkcs8, x25519Pkcs8}, refusing all §6.4 lists.
// `passphrase` is null for an unencrypted file. No error names key bytes.
export async function readKeyFile(text, passphrase) {
  if (typeof text !== "string") {
    throw new IdentityError("key file: expected text");
  }
  const name = readHeader(text);
  const blocks = pemBlocks(text);
  if (blocks.length !== 2) {
    throw new IdentityError(`key file: ${blocks.length} private key block(s), expected 2`);
  }
  const encrypted = blocks.map((block) => block.label === LABEL_ENCRYPTED);
  if (encrypted[0] !== encrypted[1]) {
    throw new IdentityError(`key file for ${name}: one key is encrypted and one is not`);
  }
  const secret = passphraseBytes(passphrase);
  if (encrypted[0] && secret === null) {
    throw new IdentityError(`key file for ${name}: encrypted, a passphrase is needed`);
  }
  if (!encrypted[0] && secret !== null) {
    throw new IdentityError(`key file for ${name}: not encrypted, yet a passphrase was given`);
  }
  const keys = await Promise.all(blocks.map((block) => readBlock(block, secret).catch(() => null)));
  if (keys.includes(null)) {
    throw new IdentityError(`key file for ${name}: wrong passphrase or damaged key`);
  }
  const [signing, kem] = keys;
  if (signing.algorithm !== "Ed25519" || kem.algorithm !== "X25519") {
    throw new IdentityError(`key file for ${name}: expected an Ed25519 key, then an X25519 key`);
  }
  return {
    name,
    ed25519Pkcs8: privateKeyInfo("Ed25519", signing.privateRaw),
    x25519Pkcs8: privateKeyInfo("X25519", kem.privateRaw),
  };
}
