// A person's other devices (spec/sessions.md §3), as src/securecomm/devices.py and the
// checks of src/securecomm/client/devices.py make them: a Delegation, signed by the person
// (purpose "delegation"), lets a device act for them until it expires; a Revocation (purpose
// "revocation") ends that at every service that holds it, each confirming with a receipt
// signed by its key (purpose "revoked"); the person's X25519 private key goes to the device
// sealed with HPKE (purpose "device-key"), so that it can open the shares sealed to them.

import { b64decode, b64encode, equal } from "./bytes.js";
import * as canonical from "./canonical.js";
import {
  FieldError,
  IdentityError,
  ParameterError,
  SecureCommError,
} from "./errors.js";
import { integer, isObject, match, object } from "./fields.js";
import * as hpke from "./hpke.js";
import { PublicIdentity, SIGNATURE_LENGTH_BYTES } from "./identity.js";

/** A delegation lasts at most a year (366 days); the person signs a new one to go on. */
export const MAX_DELEGATION_SECONDS = 366 * 86400;
/** What the person's X25519 key sealed to a device is: 32 bytes and HPKE's overhead. */
export const SEALED_KEY_BYTES = 32 + hpke.OVERHEAD_BYTES;
const MAX_TIME = 2 ** 40;
const LABEL = /^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,63}$/;
const HEX_FINGERPRINT = /^[0-9a-f]{64}$/;

const now = () => Math.floor(Date.now() / 1000);

/** `person` lets `device` act for them from `issued` until `expires` (§3.1). */
export class Delegation {
  constructor({ person, device, label, issued, expires, signature }) {
    Object.assign(this, { person, device, label, issued, expires, signature });
    Object.freeze(this);
  }

  body() {
    return {
      v: 1,
      person: this.person.toJson(),
      device: this.device.toJson(),
      label: this.label,
      issued: this.issued,
      expires: this.expires,
    };
  }

  toJson() {
    return { ...this.body(), signature: b64encode(this.signature) };
  }

  static async fromJson(value, path = "delegation") {
    const keys = ["v", "person", "device", "label", "issued", "expires", "signature"];
    const obj = object(value, path, keys, { versioned: true });
    return new Delegation({
      person: await PublicIdentity.fromJson(obj.person, `${path}.person`),
      device: await PublicIdentity.fromJson(obj.device, `${path}.device`),
      label: match(obj.label, `${path}.label`, LABEL, "a device label"),
      issued: integer(obj.issued, `${path}.issued`, 0, MAX_TIME),
      expires: integer(obj.expires, `${path}.expires`, 0, MAX_TIME),
      signature: b64decode(obj.signature, {
        field: `${path}.signature`,
        length: SIGNATURE_LENGTH_BYTES,
      }),
    });
  }

  /** Throw unless the person signed it and it is well formed (a device other than the
   * person, of the person's name, expiring after its issue and within a year of it). */
  async verify() {
    if (this.device.sameKeys(this.person))
      throw new FieldError("delegation: the device's key is the person's own");
    if (this.device.name !== this.person.name)
      throw new FieldError("delegation: the device's name is not the person's");
    if (!(this.issued < this.expires && this.expires <= this.issued + MAX_DELEGATION_SECONDS))
      throw new FieldError("delegation: it must expire after it was issued, within a year");
    await this.person.verify(this.signature, "delegation", this.body());
  }
}

/** Whether `label` names a device as §3.1 allows: 1 to 64 letters, digits, spaces and
 * `._@+-`, starting with a letter or digit. */
export function isLabel(label) {
  return typeof label === "string" && LABEL.test(label);
}

/** `person`'s (an Identity) signed delegation to `device` for `seconds` from `at`. */
export async function delegate(person, device, label, seconds, at = now()) {
  match(label, "label", LABEL, "a device label (letters, digits, space . _ @ + -)");
  if (!Number.isSafeInteger(seconds) || seconds <= 0 || seconds > MAX_DELEGATION_SECONDS)
    throw new FieldError("a delegation lasts from a second to a year");
  const fields = { person: person.public, device, label, issued: at, expires: at + seconds };
  const unsigned = new Delegation({ ...fields, signature: new Uint8Array(0) });
  const signed = new Delegation({
    ...fields,
    signature: await person.sign("delegation", unsigned.body()),
  });
  await signed.verify();
  return signed;
}

/** `person` says the device whose fingerprint is `device` (hex) acts for them no more (§3.3). */
export class Revocation {
  constructor({ person, device, revoked, signature }) {
    Object.assign(this, { person, device, revoked, signature });
    Object.freeze(this);
  }

  body() {
    return { v: 1, person: this.person.toJson(), device: this.device, revoked: this.revoked };
  }

  toJson() {
    return { ...this.body(), signature: b64encode(this.signature) };
  }

  static async fromJson(value, path = "revocation") {
    const obj = object(value, path, ["v", "person", "device", "revoked", "signature"], {
      versioned: true,
    });
    return new Revocation({
      person: await PublicIdentity.fromJson(obj.person, `${path}.person`),
      device: match(obj.device, `${path}.device`, HEX_FINGERPRINT, "64 hex digits"),
      revoked: integer(obj.revoked, `${path}.revoked`, 0, MAX_TIME),
      signature: b64decode(obj.signature, {
        field: `${path}.signature`,
        length: SIGNATURE_LENGTH_BYTES,
      }),
    });
  }

  async verify() {
    await this.person.verify(this.signature, "revocation", this.body());
  }
}

/** `person`'s (an Identity) signed revocation of the device of fingerprint `deviceHex`. */
export async function revoke(person, deviceHex, at = now()) {
  const fields = {
    person: person.public,
    device: match(deviceHex, "device", HEX_FINGERPRINT, "64 hex digits"),
    revoked: at,
  };
  const unsigned = new Revocation({ ...fields, signature: new Uint8Array(0) });
  return new Revocation({ ...fields, signature: await person.sign("revocation", unsigned.body()) });
}

/** What a service signs (purpose "revoked") once it holds `revocation`. */
export function revocationReceipt(service, revocation) {
  return {
    v: 1,
    service,
    person: revocation.person.fingerprintHex,
    device: revocation.device,
  };
}

/** Throw unless `answer` is the signed word of `service` (its pinned PublicIdentity, named
 * `name`) that it holds `revocation`. */
export async function checkReceipt(answer, service, name, revocation) {
  const expected = revocationReceipt(name, revocation);
  if (service.name !== name) throw new IdentityError(`${name}'s receipt checked with another key`);
  const same =
    isObject(answer) &&
    isObject(answer.receipt) &&
    equal(canonical.dumps(answer.receipt), canonical.dumps(expected));
  if (!same) throw new IdentityError(`${name} did not answer with a receipt for this revocation`);
  const signature = b64decode(String(answer.signature ?? ""), {
    field: `${name}'s receipt signature`,
    length: SIGNATURE_LENGTH_BYTES,
  });
  await service.verify(signature, "revoked", expected);
}

/** The HPKE info binding the person's key sealed to a device to both of them. */
export function keyInfo(person, device) {
  return hpke.info("device-key", { person: person.fingerprintHex, device: device.fingerprintHex });
}

/** The person's X25519 private key (`kemRaw`, 32 bytes), sealed to `device`. */
export async function sealPersonKey(kemRaw, person, device) {
  if (!(kemRaw instanceof Uint8Array) || kemRaw.length !== 32)
    throw new ParameterError("sealPersonKey: expected the 32 bytes of an X25519 private key");
  return hpke.seal(device.kem, keyInfo(person, device), kemRaw);
}

/**
 * The device's public identity from the code `securecomm devices init` printed on it
 * (base64 of its public identity's canonical JSON), made for `name`.
 */
export async function deviceFromCode(code, name) {
  let device;
  try {
    const data = b64decode(String(code).replace(/\s+/g, ""), { field: "the device's code" });
    device = await PublicIdentity.fromJson(
      canonical.loads(data, { what: "the device's code" }),
      "the device's code",
    );
  } catch (error) {
    if (!(error instanceof SecureCommError)) throw error;
    throw new FieldError(
      `That is not a device's code (${error.message}): give the code “securecomm devices init --as ${name}” printed on the device.`,
    );
  }
  if (device.name !== name)
    throw new IdentityError(`That device's key was made for ${device.name}, not ${name}.`);
  return device;
}

/**
 * `person`'s devices from the relay's answer to GET /api/v1/directory/NAME/devices: each
 * {delegation, revocation (or null)}, checked as the CLI checks them: every delegation and
 * revocation verifies, each revocation is of its own device, and `person` (a PublicIdentity)
 * signed them all. Anything else throws, naming the problem: no part of the list is used.
 */
export async function checkListed(answer, person) {
  if (!isObject(answer) || !Array.isArray(answer.devices))
    throw new FieldError("the relay's list of devices is not a list");
  const found = [];
  for (const [i, item] of answer.devices.entries()) {
    if (!isObject(item)) throw new FieldError(`devices[${i}]: expected an object`);
    const delegation = await Delegation.fromJson(item.delegation, `devices[${i}].delegation`);
    await delegation.verify();
    let revocation = null;
    if (item.revocation !== null && item.revocation !== undefined) {
      revocation = await Revocation.fromJson(item.revocation, `devices[${i}].revocation`);
      await revocation.verify();
      if (revocation.device !== delegation.device.fingerprintHex)
        throw new IdentityError("the relay listed a revocation of another device");
    }
    for (const signer of [delegation.person, revocation?.person ?? person]) {
      if (!signer.sameKeys(person))
        throw new IdentityError(
          `the relay listed a device of ${person.name} not signed by their key`,
        );
    }
    found.push({ delegation, revocation });
  }
  return found;
}

/** "valid", "expired" or "revoked" at `at` (Unix seconds). */
export function stateOf({ delegation, revocation }, at = now()) {
  if (revocation) return "revoked";
  return at >= delegation.expires ? "expired" : "valid";
}
