import { describe, expect, it } from "@effect/vitest"
import * as crypto from "node:crypto"
import { canonicalAuthMessage, parsePublicKey, tokenEquals, verifySignature } from "../src/internal/signature.js"

const keyPair = () =>
  crypto.generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" }
  })

// What the router does: PKCS#1 v1.5 over SHA-256 of the canonical message, base64.
const sign = (privateKeyPem: string, message: string) =>
  crypto
    .sign("sha256", Buffer.from(message, "utf8"), {
      key: privateKeyPem,
      padding: crypto.constants.RSA_PKCS1_PADDING
    })
    .toString("base64")

describe("canonicalAuthMessage", () => {
  // Expected strings printed by python3: json.dumps(json.dumps({"url": u}, indent=4, sort_keys=True)).
  it("matches Python's json.dumps for plain ASCII", () => {
    expect(canonicalAuthMessage("https://h/a/b")).toBe('{\n    "url": "https://h/a/b"\n}')
  })

  it("escapes non-ASCII as \\uXXXX", () => {
    expect(canonicalAuthMessage("http://x/\u00e9")).toBe('{\n    "url": "http://x/\\u00e9"\n}')
  })

  it("escapes quotes and backslashes, not slashes", () => {
    expect(canonicalAuthMessage('http://1.2.3.4:8000/remote/f?q="a"&b=\\\\c')).toBe(
      '{\n    "url": "http://1.2.3.4:8000/remote/f?q=\\"a\\"&b=\\\\\\\\c"\n}'
    )
  })

  it("writes astral characters as surrogate pairs and control characters as Python does", () => {
    expect(canonicalAuthMessage("http://x/\u{1F600}/\u2028/\x7f/\x00\x1f\n\r\t\b\f/é")).toBe(
      '{\n    "url": "http://x/\\ud83d\\ude00/\\u2028/\\u007f/\\u0000\\u001f\\n\\r\\t\\b\\f/\\u00e9"\n}'
    )
  })
})

describe("verifySignature", () => {
  const router = keyPair()
  const url = "http://203.0.113.7:41234/remote/generate"

  it("accepts the router's signature", () => {
    const signatureBase64 = sign(router.privateKey, canonicalAuthMessage(url))
    expect(verifySignature({ publicKeyPem: router.publicKey, url, signatureBase64 })).toBe(true)
    expect(verifySignature({ publicKeyPem: parsePublicKey(router.publicKey), url, signatureBase64 })).toBe(true)
  })

  it("accepts a signature of a unicode url", () => {
    const unicodeUrl = 'http://x/caf\u00e9/\u{1F600}?q="1"'
    const signatureBase64 = sign(router.privateKey, canonicalAuthMessage(unicodeUrl))
    expect(verifySignature({ publicKeyPem: router.publicKey, url: unicodeUrl, signatureBase64 })).toBe(true)
  })

  it("rejects a signature made with another key", () => {
    const forger = keyPair()
    const signatureBase64 = sign(forger.privateKey, canonicalAuthMessage(url))
    expect(verifySignature({ publicKeyPem: router.publicKey, url, signatureBase64 })).toBe(false)
  })

  it("rejects a tampered url", () => {
    const signatureBase64 = sign(router.privateKey, canonicalAuthMessage(url))
    expect(verifySignature({ publicKeyPem: router.publicKey, url: url + "x", signatureBase64 })).toBe(false)
  })

  it("rejects a signature over the url alone rather than the canonical message", () => {
    const signatureBase64 = sign(router.privateKey, url)
    expect(verifySignature({ publicKeyPem: router.publicKey, url, signatureBase64 })).toBe(false)
  })

  it("returns false on garbage instead of throwing", () => {
    expect(verifySignature({ publicKeyPem: router.publicKey, url, signatureBase64: "" })).toBe(false)
    expect(verifySignature({ publicKeyPem: router.publicKey, url, signatureBase64: "%%%not base64" })).toBe(false)
    expect(verifySignature({ publicKeyPem: "not a pem", url, signatureBase64: "AAAA" })).toBe(false)
  })
})

describe("tokenEquals", () => {
  it("compares tokens of equal and unequal lengths", () => {
    expect(tokenEquals("s3cret", "s3cret")).toBe(true)
    expect(tokenEquals("s3cret", "s3creT")).toBe(false)
    expect(tokenEquals("s3cret", "s3cret-longer")).toBe(false)
    // A prefix of the secret, either way round, is not the secret.
    expect(tokenEquals("s3cre", "s3cret")).toBe(false)
    expect(tokenEquals("s3cret", "s3cre")).toBe(false)
    expect(tokenEquals("s", "s3cret")).toBe(false)
    expect(tokenEquals("", "s3cret")).toBe(false)
    expect(tokenEquals("", "")).toBe(true)
    expect(tokenEquals("", "x")).toBe(false)
    expect(tokenEquals("é", "e\u0301")).toBe(false)
  })
})
