// Field readers, as src/securecomm/_fields.py: each checks one member of a parsed document
// and names the path of what it refuses. Shared by the envelope and the devices' documents.

import { FieldError, UnknownVersionError } from "./errors.js";

export function typeName(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

export function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function has(obj, key) {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

export function checkVersion(value, path, versions) {
  const version = has(value, "v") ? value.v : undefined;
  if (!versions.includes(version))
    throw new UnknownVersionError(
      `${path}.v: version ${JSON.stringify(version) ?? "missing"}, expected ${versions.join(" or ")}`,
    );
}

// `value` as an object with exactly `keys`; a versioned one has its "v" checked first (one
// of `versions`), so a later version with new members is an unknown version, not a bad field.
export function object(value, path, keys, { versioned = false, versions = [1] } = {}) {
  if (!isObject(value)) throw new FieldError(`${path}: expected an object, got ${typeName(value)}`);
  if (versioned) checkVersion(value, path, versions);
  const missing = keys.filter((key) => !has(value, key)).sort();
  if (missing.length) throw new FieldError(`${path}: missing field(s) ${missing.join(", ")}`);
  const extra = Object.keys(value)
    .filter((key) => !keys.includes(key))
    .sort();
  if (extra.length) throw new FieldError(`${path}: unexpected field(s) ${extra.join(", ")}`);
  return value;
}

export function integer(value, path, low, high) {
  if (!Number.isSafeInteger(value))
    throw new FieldError(`${path}: expected an integer, got ${typeName(value)}`);
  if (value < low || value > high)
    throw new FieldError(`${path}: ${value} is outside ${low}..${high}`);
  return value;
}

export function optionalInteger(value, path, low, high) {
  return value === null ? null : integer(value, path, low, high);
}

export function list(value, path, low, high) {
  if (!Array.isArray(value))
    throw new FieldError(`${path}: expected an array, got ${typeName(value)}`);
  if (value.length < low || value.length > high) {
    const expected = low === high ? `exactly ${low}` : `${low}..${high}`;
    throw new FieldError(`${path}: ${value.length} item(s), expected ${expected}`);
  }
  return value;
}

export function match(value, path, pattern, what) {
  if (typeof value !== "string" || !pattern.test(value))
    throw new FieldError(`${path}: expected ${what}`);
  return value;
}

export function unique(values, path, what = "name") {
  const seen = new Set();
  values.forEach((value, i) => {
    if (seen.has(value)) {
      const shown = what === "name" ? JSON.stringify(value) : value.slice(0, 16);
      throw new FieldError(`${path}[${i}]: ${what} ${shown} appears twice`);
    }
    seen.add(value);
  });
}
