// The custody protocol's bodies (spec/format-v1.md §12): a deposit sealed to a custodian,
// and a custodian's signed release sealed to the recipient. Mirrors src/securecomm/protocol.py.

import { b64decode, b64encode } from "./bytes.js";
import { FieldError, UnknownVersionError } from "./errors.js";
import * as hpke from "./hpke.js";
import { checkName } from "./identity.js";
import { Share } from "./shares.js";

const HEX_ID = /^[0-9a-f]{32}$/;
const HEX_FINGERPRINT = /^[0-9a-f]{64}$/;

function info(purpose, custodian, index, messageId, party, fingerprintHex) {
  return hpke.info(purpose, { custodian, index, message_id: messageId, [party]: fingerprintHex });
}

/** HPKE info for a share sealed by the sender to a custodian (§5). */
export function depositInfo(custodian, index, messageId, senderFingerprintHex) {
  return info("deposit", custodian, index, messageId, "sender", senderFingerprintHex);
}

/** HPKE info for a share sealed by a custodian to a recipient (§5). */
export function releaseInfo(custodian, index, messageId, recipientFingerprintHex) {
  return info("release", custodian, index, messageId, "recipient", recipientFingerprintHex);
}

/** The body of POST /v1/deposits for one custodian (§12.1). */
export async function depositBody(draft, position, custodian, sender) {
  const share = draft.shares[position];
  const messageId = draft.header.id;
  const sealed = await hpke.seal(
    custodian.kem,
    depositInfo(custodian.name, share.index, messageId, sender.fingerprintHex),
    share.toBytes(),
  );
  return {
    v: 1,
    message_id: messageId,
    index: share.index,
    share_digest: b64encode(draft.header.custodians[position].shareDigest),
    sealed_share: b64encode(sealed),
    policy: draft.header.policy.toJson(),
    recipients: draft.header.recipients.map((r) => r.toJson()),
  };
}

const RELEASE_KEYS = [
  "v",
  "status",
  "custodian",
  "index",
  "message_id",
  "recipient",
  "sealed_share",
  "signature",
];

/**
 * Check a release (§12.2) from `custodian` (its pinned PublicIdentity) and open the share
 * sealed to `reader` (an Identity). Returns the Share; the caller checks it against the
 * envelope's digest.
 */
export async function openRelease(value, reader, custodian) {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new FieldError("release: expected an object");
  if (value.v !== 1) throw new UnknownVersionError("release.v: expected 1");
  const keys = Object.keys(value).sort();
  if (keys.join() !== [...RELEASE_KEYS].sort().join())
    throw new FieldError(`release: fields ${keys.join(", ")}`);
  if (value.status !== "released") throw new FieldError("release.status: expected 'released'");
  checkName(value.custodian, { field: "release.custodian" });
  if (!Number.isSafeInteger(value.index) || value.index < 1 || value.index > 255)
    throw new FieldError("release.index: expected an integer in 1..255");
  if (typeof value.message_id !== "string" || !HEX_ID.test(value.message_id))
    throw new FieldError("release.message_id: expected 32 hex digits");
  if (typeof value.recipient !== "string" || !HEX_FINGERPRINT.test(value.recipient))
    throw new FieldError("release.recipient: expected 64 hex digits");
  // Any length, as in Python: a seal too short to open is the opaque DecryptionError (§5).
  const sealed = b64decode(value.sealed_share, { field: "release.sealed_share", allowEmpty: true });
  const signature = b64decode(value.signature, { field: "release.signature", length: 64 });
  if (value.custodian !== custodian.name)
    throw new FieldError(`release: answered as ${value.custodian}, expected ${custodian.name}`);
  if (value.recipient !== reader.public.fingerprintHex)
    throw new FieldError("release: sealed to another recipient");
  const { signature: _, ...body } = value;
  await custodian.verify(signature, "release", body);
  const plain = await hpke.open(
    reader.kemKey,
    reader.public.kem,
    releaseInfo(custodian.name, value.index, value.message_id, value.recipient),
    sealed,
  );
  return Share.fromBytes(plain);
}
