// Arithmetic in GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1
// (0x11B), spec §2.1, as src/securecomm/gf256.py. Addition is XOR;
// multiplication goes through log/exp tables over the generator 0x03.
// Table lookups are not constant-time (spec §9, "Side channels").

export const POLYNOMIAL = 0x11b;

function buildTables() {
  // exp holds two periods so that mul needs no modulo: log a + log b <= 508.
  const exp = new Uint8Array(510);
  const log = new Uint8Array(256);
  let value = 1;
  for (let power = 0; power < 255; power++) {
    exp[power] = value;
    log[value] = power;
    // the next power of the generator: value * 3 = value * 2 + value, reducing on overflow
    let doubled = value << 1;
    if (doubled & 0x100) {
      doubled ^= POLYNOMIAL;
    }
    value = doubled ^ value;
  }
  for (let power = 255; power < 510; power++) {
    exp[power] = exp[power - 255];
  }
  return { exp, log };
}

const { exp: EXP, log: LOG } = buildTables();

function checkElement(a) {
  if (!Number.isInteger(a) || a < 0 || a > 255) {
    throw new RangeError(`gf256: ${a} is not a field element`);
  }
}

export function add(a, b) {
  checkElement(a);
  checkElement(b);
  return a ^ b;
}

export function mul(a, b) {
  checkElement(a);
  checkElement(b);
  if (a === 0 || b === 0) {
    return 0;
  }
  return EXP[LOG[a] + LOG[b]];
}

export function inv(a) {
  checkElement(a);
  if (a === 0) {
    throw new RangeError("gf256: 0 has no inverse");
  }
  return EXP[255 - LOG[a]];
}

export function div(a, b) {
  return mul(a, inv(b));
}

// The 256-byte table mapping x to constant * x.
export function mulTable(constant) {
  const table = new Uint8Array(256);
  for (let x = 1; x < 256; x++) {
    table[x] = mul(constant, x);
  }
  return table;
}
