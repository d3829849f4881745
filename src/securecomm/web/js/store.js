// What the page keeps in this browser profile (IndexedDB "securecomm"): identities with their
// private keys wrapped under the passphrase (keywrap.js) and their passphrase-protected key
// file, the pinned public keys of contacts and custodians, and per reader and message the
// release ids awaiting an operator's approval, the releases kept from a read that came up
// short, and whether a read found the message can no longer be read.

import { KeyChangedError } from "./errors.js";
import { PublicIdentity } from "./identity.js";

const DB_NAME = "securecomm";
const STORES = ["identities", "known", "pending", "settings"];

let opened = null;

function db() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      for (const name of STORES) request.result.createObjectStore(name);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () =>
      reject(new Error("this browser's storage (IndexedDB) is not available"));
  });
  return opened;
}

async function run(store, mode, action) {
  const database = await db();
  return new Promise((resolve, reject) => {
    const tx = database.transaction(store, mode);
    let result;
    const request = action(tx.objectStore(store));
    if (request) request.onsuccess = () => (result = request.result);
    // Resolve only once the transaction is durable, so a crash right after loses nothing.
    tx.oncomplete = () => resolve(result);
    tx.onerror = () =>
      reject(
        new Error(`could not ${mode === "readonly" ? "read" : "save"} ${store} in this browser`),
      );
    tx.onabort = tx.onerror;
  });
}

export const get = (store, key) => run(store, "readonly", (s) => s.get(key));
export const put = (store, key, value) => run(store, "readwrite", (s) => s.put(value, key));
export const remove = (store, key) => run(store, "readwrite", (s) => s.delete(key));
export const keys = (store) => run(store, "readonly", (s) => s.getAllKeys());
export const values = (store) => run(store, "readonly", (s) => s.getAll());

/** Pinned public identities by name. A key that changes is refused, never replaced. */
export class KnownKeys {
  constructor(map) {
    this.map = map;
  }

  static async load() {
    const map = new Map();
    for (const name of await keys("known")) {
      map.set(name, await PublicIdentity.fromJson(await get("known", name), `known key ${name}`));
    }
    return new KnownKeys(map);
  }

  get(name) {
    return this.map.get(name) ?? null;
  }

  /** Throw KeyChangedError, naming both fingerprints, if `seen` differs from the pinned key. */
  check(seen, context = "") {
    const pinned = this.get(seen.name);
    if (pinned && pinned.fingerprintHex !== seen.fingerprintHex) {
      throw new KeyChangedError(
        seen.name,
        pinned.shortFingerprint(),
        seen.shortFingerprint(),
        context,
      );
    }
  }

  /** Pin `identity` if its name is new; true if it was pinned now. */
  async pin(identity) {
    this.check(identity);
    if (this.map.has(identity.name)) return false;
    await put("known", identity.name, identity.toJson());
    this.map.set(identity.name, identity);
    return true;
  }

  async forget(name) {
    await remove("known", name);
    this.map.delete(name);
  }
}
