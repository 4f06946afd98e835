import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import * as fs from "node:fs"
import * as Https from "node:https"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { app } from "../examples/square.js"
import * as Tls from "../src/internal/tls.js"
import * as WorkerClient from "../src/WorkerClient.js"
import { TlsConfigInvalid, WorkerUnavailable } from "../src/WorkerError.js"
import { hasOpenssl, selfSigned } from "./fixtures/tls.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

/** A stand-in worker over HTTPS that squares, enough for the client. */
const httpsWorker = (cert: string, key: string) =>
  Effect.gen(function* () {
    const server = Https.createServer({ cert, key }, (req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        const { payload } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { payload: { kwargs: { x: number } } }
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ result: { ok: payload.kwargs.x * payload.kwargs.x } }))
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

describe("TLS settings", () => {
  it.effect("USE_SSL, WORKER_TLS_CERT and WORKER_TLS_KEY, with the reference's instance files by default", () =>
    Effect.gen(function* () {
      expect(yield* withEnv({})(Tls.config)).toEqual({
        enabled: false,
        certPath: "/etc/instance.crt",
        keyPath: "/etc/instance.key"
      })
      expect(
        yield* withEnv({ USE_SSL: "true", WORKER_TLS_CERT: "/c.pem", WORKER_TLS_KEY: "/k.pem" })(Tls.config)
      ).toEqual({ enabled: true, certPath: "/c.pem", keyPath: "/k.pem" })
      expect(yield* withEnv({ USE_SSL: "false" })(Tls.config)).toMatchObject({ enabled: false })
      // A value that is no boolean is a configuration error, not "off".
      expect(yield* Effect.flip(withEnv({ USE_SSL: "maybe" })(Tls.config))).toBeDefined()
    })
  )
})

describe.skipIf(!hasOpenssl)("TLS credentials", () => {
  it.scoped("loads a certificate and its key", () =>
    Effect.gen(function* () {
      const pem = yield* selfSigned
      const credentials = yield* Tls.load(pem)
      expect(credentials.cert.toString("utf8")).toBe(pem.cert)
      expect(credentials.subject).toBe("CN=localhost")
    })
  )

  it.scoped("a missing, unreadable or invalid file is a start-up error naming the setting and the file", () =>
    Effect.gen(function* () {
      const pem = yield* selfSigned
      const other = yield* selfSigned
      const failure = (certPath: string, keyPath: string) => Effect.flip(Tls.load({ certPath, keyPath }))

      const missing = yield* failure("/nonexistent/instance.crt", pem.keyPath)
      expect(missing).toBeInstanceOf(TlsConfigInvalid)
      expect(missing).toMatchObject({
        reason: "missing",
        setting: "WORKER_TLS_CERT",
        path: "/nonexistent/instance.crt"
      })
      expect(missing.message).toMatch(/^TLS: WORKER_TLS_CERT file \/nonexistent\/instance.crt does not exist/)
      expect(yield* failure(pem.certPath, "/nonexistent/instance.key")).toMatchObject({
        reason: "missing",
        setting: "WORKER_TLS_KEY"
      })

      // A directory cannot be read as a file (a permission test would pass as root).
      expect(yield* failure(pem.dir, pem.keyPath)).toMatchObject({ reason: "unreadable", path: pem.dir })

      const garbage = path.join(pem.dir, "garbage.pem")
      fs.writeFileSync(garbage, "not a certificate")
      expect(yield* failure(garbage, pem.keyPath)).toMatchObject({ reason: "invalid", setting: "WORKER_TLS_CERT" })
      expect(yield* failure(pem.certPath, garbage)).toMatchObject({ reason: "invalid", setting: "WORKER_TLS_KEY" })

      const mismatched = yield* failure(pem.certPath, other.keyPath)
      expect(mismatched).toMatchObject({ reason: "invalid", setting: "WORKER_TLS_KEY", path: other.keyPath })
      expect(mismatched.detail).toContain("does not belong to the certificate")
    })
  )
})

describe.skipIf(!hasOpenssl)("the typed client over TLS", () => {
  it.scopedLive("trusts the CA it is given (Effect and Promise clients), or an agent of the caller's", () =>
    Effect.gen(function* () {
      const pem = yield* selfSigned
      const url = yield* httpsWorker(pem.cert, pem.key)

      const client = yield* WorkerClient.make(app, { url }).pipe(
        Effect.provide(WorkerClient.layerTls({ ca: pem.cert }))
      )
      expect(yield* client.square({ x: 5 })).toBe(25)

      const promise = WorkerClient.makePromise(app, { url, tls: { ca: pem.cert } })
      expect(yield* Effect.promise(() => promise.square({ x: 6 }))).toBe(36)

      const agent = new Https.Agent({ ca: pem.cert })
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))
      const withAgent = WorkerClient.makePromise(app, { url, tls: { agent } })
      expect(yield* Effect.promise(() => withAgent.square({ x: 7 }))).toBe(49)
    })
  )

  it.scopedLive("without the CA a self-signed worker is refused", () =>
    Effect.gen(function* () {
      const pem = yield* selfSigned
      const url = yield* httpsWorker(pem.cert, pem.key)
      const overFetch = yield* WorkerClient.make(app, { url, deadline: 0 }).pipe(Effect.provide(FetchHttpClient.layer))
      expect(yield* Effect.flip(overFetch.square({ x: 5 }))).toBeInstanceOf(WorkerUnavailable)
      const other = yield* selfSigned
      const wrongCa = yield* WorkerClient.make(app, { url, deadline: 0 }).pipe(
        Effect.provide(WorkerClient.layerTls({ ca: other.cert }))
      )
      const refused = yield* Effect.flip(wrongCa.square({ x: 5 }))
      expect(refused).toMatchObject({ _tag: "WorkerUnavailable", reason: "unreachable" })
    })
  )
})
