// Raw Shamir shares over GF(2^8), byte by byte (spec §2.2 split, §2.3
// combine), as src/securecomm/shamir.py. A raw share is the y-bytes, then
// the x-coordinate as the last byte (Vault's layout). Raw shares record no
// threshold and no checksum: use shares.js for anything people or networks
// carry.

import { randomBytes } from "./bytes.js";
import {
  DuplicateShareError,
  InsufficientSharesError,
  LengthError,
  ParameterError,
  RaggedSharesError,
  ShareIndexError,
} from "./errors.js";
import * as gf256 from "./gf256.js";

// x-coordinates are one byte and 0 is the secret's own, so at most 255 shares.
export const MAX_SHARES = 255;
// A threshold of 1 would hand the secret itself to every holder.
export const MIN_THRESHOLD = 2;

export function checkParameters(n, t) {
  if (!Number.isInteger(n) || !Number.isInteger(t)) {
    throw new ParameterError("shamir: n and t must be integers");
  }
  if (t < MIN_THRESHOLD) {
    throw new ParameterError(`shamir: threshold ${t} is below the minimum ${MIN_THRESHOLD}`);
  }
  if (t > n) {
    throw new ParameterError(`shamir: threshold ${t} is above the number of shares ${n}`);
  }
  if (n > MAX_SHARES) {
    throw new ParameterError(`shamir: ${n} shares asked for, at most ${MAX_SHARES} exist`);
  }
}

// Draw the coefficients a_1 .. a_(t-1), in that order, each one byte per
// secret byte: coefficients[k][j] is a_(k+1),j of the polynomial for byte j.
function drawCoefficients(length, t, random) {
  const coefficients = [];
  for (let k = 1; k < t; k++) {
    const drawn = random(length);
    if (!(drawn instanceof Uint8Array) || drawn.length !== length) {
      throw new ParameterError(`shamir: the random source gave no ${length} bytes`);
    }
    coefficients.push(drawn);
  }
  return coefficients;
}

// f_j(x) = S[j] + a_1,j x + ... + a_(t-1),j x^(t-1), by Horner's rule.
function evaluate(secret, coefficients, j, x) {
  let y = 0;
  for (let k = coefficients.length - 1; k >= 0; k--) {
    y = gf256.mul(y, x) ^ coefficients[k][j];
  }
  return gf256.mul(y, x) ^ secret[j];
}

// Split `secret` into n raw shares with x = 1..n, any t of which rebuild it.
// `random(k)` returns k random bytes; it is called t - 1 times.
export function split(secret, n, t, random = randomBytes) {
  checkParameters(n, t);
  if (!(secret instanceof Uint8Array)) {
    throw new ParameterError("shamir: the secret must be a Uint8Array");
  }
  const length = secret.length;
  if (length === 0) {
    throw new ParameterError("shamir: the secret is empty");
  }
  const coefficients = drawCoefficients(length, t, random);
  const shares = [];
  for (let x = 1; x <= n; x++) {
    const share = new Uint8Array(length + 1);
    for (let j = 0; j < length; j++) {
      share[j] = evaluate(secret, coefficients, j, x);
    }
    share[length] = x;
    shares.push(share);
  }
  return shares;
}

// Refuse what cannot be combined (spec §2.3, in the table's order, share by
// share); return the shares' x-coordinates.
function checkRaw(shares) {
  if (!Array.isArray(shares)) {
    throw new ParameterError("shamir: expected an array of raw shares");
  }
  if (shares.length < MIN_THRESHOLD) {
    throw new InsufficientSharesError(
      `shamir: ${shares.length} share(s) given, at least ${MIN_THRESHOLD} needed`,
    );
  }
  const seen = new Map();
  shares.forEach((share, i) => {
    const position = i + 1;
    if (!(share instanceof Uint8Array)) {
      throw new ParameterError(`shamir: share ${position} is not a Uint8Array`);
    }
    if (share.length < 2) {
      throw new LengthError(
        `shamir: share ${position}: length ${share.length} bytes, expected at least 2`,
      );
    }
    if (share.length !== shares[0].length) {
      throw new RaggedSharesError(
        `shamir: share ${position}: length ${share.length} bytes,` +
          ` expected ${shares[0].length} like share 1`,
      );
    }
    const x = share[share.length - 1];
    if (x === 0) {
      throw new ShareIndexError(`shamir: share ${position}: index 0 is the secret's own`);
    }
    if (seen.has(x)) {
      throw new DuplicateShareError(
        `shamir: share ${position}: index ${x} already given by share ${seen.get(x)}`,
      );
    }
    seen.set(x, position);
  });
  return [...seen.keys()];
}

// The weight of each share's y in the value interpolated at x = `at`:
// the product over m != i of (at + x_m) / (x_i + x_m).
function lagrangeWeights(xs, at) {
  return xs.map((xi, i) => {
    let numerator = 1;
    let denominator = 1;
    xs.forEach((xm, m) => {
      if (m !== i) {
        numerator = gf256.mul(numerator, at ^ xm);
        denominator = gf256.mul(denominator, xi ^ xm);
      }
    });
    return gf256.div(numerator, denominator);
  });
}

// Evaluate at `x` the polynomials through the given raw shares (x = 0 is the secret).
export function interpolate(rawShares, x) {
  const xs = checkRaw(rawShares);
  if (!Number.isInteger(x) || x < 0 || x > 255) {
    throw new ParameterError(`shamir: x = ${x} is outside the field`);
  }
  const weights = lagrangeWeights(xs, x);
  const length = rawShares[0].length - 1;
  const value = new Uint8Array(length);
  rawShares.forEach((share, i) => {
    const table = gf256.mulTable(weights[i]);
    for (let j = 0; j < length; j++) {
      value[j] ^= table[share[j]];
    }
  });
  return value;
}

// Rebuild the secret from raw shares, all of them used. With fewer than t
// shares the result is wrong and cannot be known to be: shares.js records t.
export function combine(rawShares) {
  return interpolate(rawShares, 0);
}
