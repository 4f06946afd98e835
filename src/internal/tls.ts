import { Config, Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs/promises"
import * as Tls from "node:tls"
import { TlsConfigInvalid } from "../WorkerError.js"

// TLS as the reference serves it (server/lib/server.py): with USE_SSL=true the main port speaks HTTPS with the
// instance certificate the platform installs, and the reports carry https://.

/** @internal */
export const DEFAULT_CERT = "/etc/instance.crt"
/** @internal */
export const DEFAULT_KEY = "/etc/instance.key"

/** Where the worker's certificate and key are, and whether to serve TLS at all. @internal */
export interface Settings {
  readonly enabled: boolean
  readonly certPath: string
  readonly keyPath: string
}

/** `USE_SSL`, `WORKER_TLS_CERT`, `WORKER_TLS_KEY`. @internal */
export const config: Config.Config<Settings> = Config.all({
  enabled: Config.boolean("USE_SSL").pipe(
    Config.withDefault(false),
    Config.withDescription("Serve HTTPS on WORKER_PORT (the reference's USE_SSL=true)")
  ),
  certPath: Config.string("WORKER_TLS_CERT").pipe(
    Config.withDefault(DEFAULT_CERT),
    Config.withDescription("PEM certificate (chain) served with USE_SSL=true")
  ),
  keyPath: Config.string("WORKER_TLS_KEY").pipe(
    Config.withDefault(DEFAULT_KEY),
    Config.withDescription("PEM private key of the certificate")
  )
})

/** A certificate and its key, read and checked. @internal */
export interface Credentials {
  readonly cert: Buffer
  readonly key: Buffer
  readonly certPath: string
  readonly keyPath: string
  /** The certificate's subject and validity, for the start-up log. */
  readonly subject: string
  readonly validTo: string
}

const readPem = (setting: string, path: string): Effect.Effect<Buffer, TlsConfigInvalid> =>
  Effect.tryPromise({
    try: () => fs.readFile(path),
    catch: (e) => {
      const code = (e as NodeJS.ErrnoException).code
      return new TlsConfigInvalid({
        reason: code === "ENOENT" ? "missing" : "unreadable",
        setting,
        path,
        detail: e instanceof Error ? e.message : String(e)
      })
    }
  })

const check = <A>(setting: string, path: string, f: () => A): Effect.Effect<A, TlsConfigInvalid> =>
  Effect.try({
    try: f,
    catch: (e) =>
      new TlsConfigInvalid({ reason: "invalid", setting, path, detail: e instanceof Error ? e.message : String(e) })
  })

/**
 * Read the certificate and key, and check that they are PEM, that the key belongs to the certificate and that Node can
 * serve them; the error names the setting and the file at fault. Read once, at start-up.
 *
 * @internal
 */
export const load = (settings: {
  readonly certPath: string
  readonly keyPath: string
}): Effect.Effect<Credentials, TlsConfigInvalid> =>
  Effect.gen(function* () {
    const { certPath, keyPath } = settings
    // One after the other: when both are missing, the certificate is the one named, every time (read at once, the
    // first read to fail won, and the error depended on the machine's load).
    const cert = yield* readPem("WORKER_TLS_CERT", certPath)
    const key = yield* readPem("WORKER_TLS_KEY", keyPath)
    const x509 = yield* check("WORKER_TLS_CERT", certPath, () => new crypto.X509Certificate(cert))
    const privateKey = yield* check("WORKER_TLS_KEY", keyPath, () => crypto.createPrivateKey(key))
    if (!x509.checkPrivateKey(privateKey)) {
      return yield* new TlsConfigInvalid({
        reason: "invalid",
        setting: "WORKER_TLS_KEY",
        path: keyPath,
        detail: `the key does not belong to the certificate in ${certPath} (${x509.subject.replaceAll("\n", ", ")})`
      })
    }
    // What the server will do with them: a chain or key Node cannot use fails here rather than on the first client.
    yield* check("WORKER_TLS_CERT", certPath, () => Tls.createSecureContext({ cert, key }))
    return { cert, key, certPath, keyPath, subject: x509.subject.replaceAll("\n", ", "), validTo: x509.validTo }
  })
