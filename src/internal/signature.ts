/**
 * The reference's signed auth: the router signs `json.dumps({"url": url}, indent=4, sort_keys=True)` with RSA
 * PKCS#1 v1.5 / SHA-256, and the worker checks it against the engine's public key.
 *
 * @internal
 */
import * as crypto from "node:crypto"

const shortEscapes: Readonly<Record<string, string>> = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f"
}

/**
 * A string as Python's `json.dumps` writes it with the default `ensure_ascii=True`: quoted; `"` and `\` escaped;
 * `\n \r \t \b \f` short-escaped; every other code unit outside printable ASCII (0x20-0x7e) as a lower-case `\uXXXX`.
 * Working on UTF-16 code units gives Python's surrogate pairs for astral characters (and its lone-surrogate escapes)
 * for free. `/` is not escaped.
 *
 * @internal
 */
export const pythonJsonString = (s: string): string => {
  let out = '"'
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!
    const code = s.charCodeAt(i)
    const short = shortEscapes[ch]
    if (short !== undefined) out += short
    else if (code < 0x20 || code > 0x7e) out += "\\u" + code.toString(16).padStart(4, "0")
    else out += ch
  }
  return out + '"'
}

/**
 * The exact text the router signs for `url`: Python's `json.dumps({"url": url}, indent=4, sort_keys=True)`.
 *
 * @example
 * ```ts
 * canonicalAuthMessage("http://x/é") // '{\n    "url": "http://x/\\u00e9"\n}'
 * ```
 *
 * @internal
 */
export const canonicalAuthMessage = (url: string): string => `{\n    "url": ${pythonJsonString(url)}\n}`

/**
 * A public key parsed once, for checking many requests (parsing a PEM per request is needless work).
 *
 * @internal
 */
export const parsePublicKey = (publicKeyPem: string): crypto.KeyObject => crypto.createPublicKey(publicKeyPem)

/**
 * Whether `signatureBase64` is the router's signature of `url` under the engine's public key (PEM text or a parsed
 * key). Any malformed input (bad PEM, bad base64, wrong key type) is simply not a valid signature: the caller answers
 * 401 either way, as the reference does.
 *
 * @internal
 */
export const verifySignature = (options: {
  readonly publicKeyPem: string | crypto.KeyObject
  readonly url: string
  readonly signatureBase64: string
}): boolean => {
  try {
    const key = typeof options.publicKeyPem === "string" ? parsePublicKey(options.publicKeyPem) : options.publicKeyPem
    // ensure_ascii makes the message pure ASCII, so its UTF-8 bytes are the bytes Python signs.
    return crypto.verify(
      "sha256",
      Buffer.from(canonicalAuthMessage(options.url), "utf8"),
      { key, padding: crypto.constants.RSA_PKCS1_PADDING },
      Buffer.from(options.signatureBase64, "base64")
    )
  } catch {
    return false
  }
}

/**
 * Compares two secrets (tokens, passwords) in time independent of where they differ. Both sides are hashed first so
 * `timingSafeEqual` always sees equal lengths (it throws otherwise) and the length of the expected secret is not
 * revealed by an early exit.
 *
 * @internal
 */
export const tokenEquals = (a: string, b: string): boolean => {
  const digest = (s: string) => crypto.createHash("sha256").update(s, "utf8").digest()
  return crypto.timingSafeEqual(digest(a), digest(b))
}
