// The rule a new passphrase must meet before the page locks a key with it: long enough, and
// not one a guesser tries first. src/securecomm/passphrases.py holds the same rule, and
// vectors/passphrases.json the cases both are tested with. A passphrase that unlocks a key
// is never held to it.

export const MIN_PASSPHRASE_LENGTH = 8; // characters
export const MIN_DISTINCT_CHARACTERS = 5;

// Runs along the alphabet, the digits and keyboard rows (US, German and French layouts) and
// columns: a passphrase that is a stretch of one, either way, is tried early.
const RUNS = [
  "abcdefghijklmnopqrstuvwxyz",
  "01234567890",
  "1234567890-=",
  "!@#$%^&*()_+",
  "qwertyuiop[]",
  "asdfghjkl;'",
  "zxcvbnm,./",
  "qwertzuiop",
  "yxcvbnm",
  "azertyuiop",
  "qsdfghjklm",
  "wxcvbn",
  "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
  "1q2w3e4r5t6y7u8i9o0p",
  "q1w2e3r4t5y6u7i8o9p0",
  "zaq12wsxcde34rfvbgt56yhnmju78ik,.lo90p;/-",
];

// Passphrases that lists of leaked ones put near the top, and this program's own name, as
// passphrases.py lists them.
const COMMON = new Set([
  "password",
  "password1",
  "password12",
  "password123",
  "password!",
  "passw0rd",
  "p@ssword",
  "p@ssw0rd",
  "iloveyou",
  "iloveyou1",
  "sunshine",
  "sunshine1",
  "princess",
  "princess1",
  "football",
  "football1",
  "baseball",
  "basketball",
  "welcome1",
  "welcome123",
  "letmein1",
  "letmein123",
  "trustno1",
  "superman",
  "starwars",
  "whatever",
  "computer",
  "internet",
  "changeme",
  "changeme1",
  "admin123",
  "administrator",
  "abc12345",
  "abcd1234",
  "qwerty12",
  "qwerty123",
  "qwerty1234",
  "a1b2c3d4",
  "monkey123",
  "dragon123",
  "master123",
  "shadow123",
  "secret123",
  "freedom1",
  "mustang1",
  "michael1",
  "jennifer",
  "jordan23",
  "hello123",
  "charlie1",
  "chocolate",
  "butterfly",
  "starwars1",
  "securecomm",
  "securecomm1",
]);

const reversed = (text) => [...text].reverse().join("");

/**
 * Why `passphrase` is too easy to guess for a new key, as {code, why}, or null: `code` names
 * the rule (short, few_characters, digits, run, common), `why` completes "the passphrase …".
 * Characters are counted as Python counts them, by code point.
 */
export function weakness(passphrase) {
  const characters = [...passphrase];
  if (characters.length < MIN_PASSPHRASE_LENGTH)
    return { code: "short", why: `is shorter than ${MIN_PASSPHRASE_LENGTH} characters` };
  if (new Set(characters).size < MIN_DISTINCT_CHARACTERS)
    return {
      code: "few_characters",
      why: `has fewer than ${MIN_DISTINCT_CHARACTERS} different characters`,
    };
  if (/^[0-9]+$/.test(passphrase)) return { code: "digits", why: "is only digits" };
  const lowered = passphrase.toLowerCase();
  if (RUNS.some((run) => run.includes(lowered) || reversed(run).includes(lowered)))
    return { code: "run", why: "is a run of the alphabet, the digits or a keyboard row" };
  if (COMMON.has(lowered))
    return { code: "common", why: "is one of the passphrases guessers try first" };
  return null;
}
