// Canonical JSON (spec §1.4): RFC 8785 (JCS) without floats, as
// src/securecomm/canonical.py writes and reads it. dumps() writes the one
// canonical form; loads() is a hand-written strict JSON parser that refuses
// what §1.4 forbids (FormatError), then re-encodes and compares the bytes,
// so any other spelling of a valid document is a NonCanonicalError.
// parseJson() reads an HTTP body (§1.4.1): the same values, any spelling.

import { fromUtf8, utf8 } from "./bytes.js";
import { FieldError, FormatError, NonCanonicalError, ParameterError } from "./errors.js";

export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER; // 2^53 - 1
// Deeper documents are refused (FormatError) instead of exhausting the stack.
export const MAX_DEPTH = 512;

// Writing

const SHORT_ESCAPES = new Map([
  ['"', '\\"'],
  ["\\", "\\\\"],
  ["\b", "\\b"],
  ["\t", "\\t"],
  ["\n", "\\n"],
  ["\f", "\\f"],
  ["\r", "\\r"],
]);

function writeString(text, path) {
  if (!text.isWellFormed()) {
    throw new FieldError(`canonical JSON: ${path}: a string holds a lone UTF-16 surrogate`);
  }
  // Only '"', '\' and U+0000..U+001F are escaped; everything else is literal UTF-8.
  const escaped = text.replace(/["\\\u0000-\u001f]/g, (char) => {
    const short = SHORT_ESCAPES.get(char);
    return short ?? "\\u" + char.charCodeAt(0).toString(16).padStart(4, "0");
  });
  return '"' + escaped + '"';
}

function isPlainObject(value) {
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function describe(value) {
  if (value === undefined) {
    return "undefined";
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? "an integer outside +/-(2^53 - 1)" : "a non-integer number";
  }
  if (typeof value === "object") {
    return value.constructor?.name ?? "object";
  }
  return typeof value;
}

function write(value, out, path, open) {
  if (value === null) {
    out.push("null");
  } else if (value === true) {
    out.push("true");
  } else if (value === false) {
    out.push("false");
  } else if (typeof value === "number" && Number.isSafeInteger(value)) {
    out.push(String(value)); // String(-0) is "0"
  } else if (typeof value === "string") {
    out.push(writeString(value, path));
  } else if (Array.isArray(value)) {
    enter(value, path, open);
    out.push("[");
    // An index loop, not forEach: a hole in a sparse array is undefined, an error.
    for (let i = 0; i < value.length; i++) {
      if (i) {
        out.push(",");
      }
      write(value[i], out, `${path}[${i}]`, open);
    }
    out.push("]");
    open.delete(value);
  } else if (typeof value === "object" && isPlainObject(value)) {
    enter(value, path, open);
    out.push("{");
    // The default sort compares UTF-16 code units, as RFC 8785 §3.2.3 asks.
    Object.keys(value)
      .sort()
      .forEach((key, i) => {
        if (i) {
          out.push(",");
        }
        out.push(writeString(key, `${path}: key`), ":");
        write(value[key], out, `${path}.${key}`, open);
      });
    out.push("}");
    open.delete(value);
  } else {
    throw new FieldError(`canonical JSON: ${path}: ${describe(value)} has no JSON form here`);
  }
}

function enter(container, path, open) {
  if (open.has(container)) {
    throw new FieldError(`canonical JSON: ${path}: the value contains itself`);
  }
  if (open.size >= MAX_DEPTH) {
    throw new FieldError(`canonical JSON: ${path}: nested too deeply`);
  }
  open.add(container);
}

// The canonical UTF-8 bytes of `value`.
export function dumps(value) {
  const out = [];
  write(value, out, "$", new Set());
  return utf8(out.join(""));
}

// Reading

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
const SIMPLE_ESCAPES = new Map([
  ['"', '"'],
  ["\\", "\\"],
  ["/", "/"],
  ["b", "\b"],
  ["f", "\f"],
  ["n", "\n"],
  ["r", "\r"],
  ["t", "\t"],
]);
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;
const LONGEST_SAFE_DIGITS = String(MAX_SAFE_INTEGER).length;

// A recursive-descent parser for RFC 8259 JSON that accepts every valid
// spelling (so the caller can tell NonCanonicalError from FormatError) and
// refuses floats, out-of-range integers, duplicate keys and lone surrogates.
class Parser {
  constructor(text, what) {
    this.text = text;
    this.what = what;
    this.pos = 0;
  }

  fail(reason) {
    return new FormatError(`${this.what}: not JSON (${reason}; offset ${this.pos})`);
  }

  refuse(reason) {
    return new FormatError(`${this.what}: ${reason}`);
  }

  skipWhitespace() {
    while (this.pos < this.text.length && WHITESPACE.has(this.text[this.pos])) {
      this.pos++;
    }
  }

  document() {
    this.skipWhitespace();
    const value = this.value(0);
    this.skipWhitespace();
    if (this.pos !== this.text.length) {
      throw this.fail("extra data");
    }
    return value;
  }

  value(depth) {
    if (depth >= MAX_DEPTH) {
      throw this.refuse("nested too deeply");
    }
    const char = this.text[this.pos];
    if (char === "{") {
      return this.object(depth);
    }
    if (char === "[") {
      return this.array(depth);
    }
    if (char === '"') {
      return this.string();
    }
    if (char === "-" || (char >= "0" && char <= "9")) {
      return this.number();
    }
    for (const [literal, result] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ]) {
      if (this.text.startsWith(literal, this.pos)) {
        this.pos += literal.length;
        return result;
      }
    }
    for (const constant of ["NaN", "Infinity"]) {
      if (this.text.startsWith(constant, this.pos)) {
        throw this.refuse(`${constant} is not JSON`);
      }
    }
    throw this.fail("expecting a value");
  }

  object(depth) {
    this.pos++; // {
    const result = {};
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') {
        throw this.fail("expecting a property name in double quotes");
      }
      const key = this.string();
      if (Object.hasOwn(result, key)) {
        throw this.refuse(`duplicate key ${JSON.stringify(key)}`);
      }
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") {
        throw this.fail("expecting ':'");
      }
      this.pos++;
      this.skipWhitespace();
      // defineProperty, not assignment: a "__proto__" key is an own member.
      Object.defineProperty(result, key, {
        value: this.value(depth + 1),
        writable: true,
        enumerable: true,
        configurable: true,
      });
      this.skipWhitespace();
      const next = this.text[this.pos++];
      if (next === "}") {
        return result;
      }
      if (next !== ",") {
        this.pos--;
        throw this.fail("expecting ',' or '}'");
      }
    }
  }

  array(depth) {
    this.pos++; // [
    const result = [];
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      result.push(this.value(depth + 1));
      this.skipWhitespace();
      const next = this.text[this.pos++];
      if (next === "]") {
        return result;
      }
      if (next !== ",") {
        this.pos--;
        throw this.fail("expecting ',' or ']'");
      }
    }
  }

  string() {
    this.pos++; // opening quote
    let result = "";
    for (;;) {
      if (this.pos >= this.text.length) {
        throw this.fail("unterminated string");
      }
      const char = this.text[this.pos++];
      if (char === '"') {
        break;
      }
      if (char < " ") {
        this.pos--;
        throw this.fail("control character in a string");
      }
      if (char !== "\\") {
        result += char;
        continue;
      }
      const escape = this.text[this.pos++];
      if (SIMPLE_ESCAPES.has(escape)) {
        result += SIMPLE_ESCAPES.get(escape);
      } else if (escape === "u") {
        const digits = this.text.slice(this.pos, this.pos + 4);
        if (!HEX4.test(digits)) {
          throw this.fail("invalid \\u escape");
        }
        result += String.fromCharCode(parseInt(digits, 16));
        this.pos += 4;
      } else {
        this.pos--;
        throw this.fail("invalid escape");
      }
    }
    // Escapes may spell half of a surrogate pair alone: "\ud800".
    if (!result.isWellFormed()) {
      throw this.refuse("a string holds a lone UTF-16 surrogate");
    }
    return result;
  }

  number() {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) {
      throw this.fail("expecting a value");
    }
    const [spelling, fraction, exponent] = match;
    this.pos += spelling.length;
    if (fraction !== undefined || exponent !== undefined) {
      throw this.refuse(`number ${spelling} is not an integer`);
    }
    const digits = spelling.replace(/^-/, "");
    const value = Number(spelling);
    if (digits.length > LONGEST_SAFE_DIGITS || !Number.isSafeInteger(value)) {
      throw this.refuse(`integer ${spelling.slice(0, 32)} is outside +/-(2^53 - 1)`);
    }
    return value;
  }
}

// Parse JSON bytes under §1.4's value rules, with their canonical bytes.
function parse(data, what) {
  if (!(data instanceof Uint8Array)) {
    throw new ParameterError(`${what}: expected a Uint8Array`);
  }
  // fromUtf8 keeps a byte order mark, which the parser then refuses.
  const text = fromUtf8(data, { field: what });
  const value = new Parser(text, what).document();
  try {
    return { value, canonical: dumps(value) };
  } catch (error) {
    if (error instanceof FieldError) {
      throw new FormatError(`${what}: ${error.message}`);
    }
    throw error;
  }
}

// Parse a JSON body (§1.4.1): an object of canonical JSON's values, in any spelling.
// Whitespace and member order are free; invalid UTF-8, a byte order mark, floats, NaN,
// integers beyond ±(2^53 − 1), duplicate keys, lone surrogates and a value that is not an
// object are refused (FormatError).
export function parseJson(data, { what = "body" } = {}) {
  const { value } = parse(data, what);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new FormatError(`${what}: not a JSON object`);
  }
  return value;
}

// Parse canonical JSON bytes; refuse invalid UTF-8, floats, duplicates, other spellings.
export function loads(data, { what = "document" } = {}) {
  const { value, canonical } = parse(data, what);
  if (!sameBytes(canonical, data)) {
    throw new NonCanonicalError(
      `${what}: JSON is not in canonical form (RFC 8785: sorted keys, no spaces)`,
    );
  }
  return value;
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

// A document stored as a file (§1.4): canonical JSON, then one optional LF.
export function loadsFile(data, { what = "file" } = {}) {
  const end = data.length && data[data.length - 1] === 0x0a ? data.length - 1 : data.length;
  return loads(data.subarray(0, end), { what });
}
