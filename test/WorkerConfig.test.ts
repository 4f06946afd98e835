import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect } from "effect"
import * as Crypto from "node:crypto"
import * as WorkerConfig from "../src/WorkerConfig.js"
import { keyPair } from "./fixtures/serving.js"

/** Resolve `options` against exactly `env` (nothing from the real environment). */
const resolveWith = (options: WorkerConfig.ServeOptions, env: Record<string, string> = {}) =>
  WorkerConfig.resolve(options).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

/** The message of the configuration error, which must name the setting, the value and what is allowed. */
const refused = (options: WorkerConfig.ServeOptions, env: Record<string, string> = {}) =>
  Effect.map(Effect.flip(resolveWith(options, env)), String)

describe("WorkerConfig", () => {
  it.effect(
    "defaults: port 8000, 32 MiB bodies, 30 s header and body timeouts, 65 s keep-alive, 1024 connections",
    () =>
      Effect.gen(function* () {
        const config = yield* resolveWith({})
        expect(config).toMatchObject({
          port: 8000,
          host: undefined,
          maxBodySize: 32 * 1024 * 1024,
          maxConnections: 1024,
          onStartupFailure: "exit",
          handleSignals: true,
          callTimeout: undefined,
          maxQueueTime: undefined,
          auth: { mode: "none" }
        })
        expect(Duration.toMillis(config.headersTimeout)).toBe(30_000)
        expect(Duration.toMillis(config.bodyTimeout)).toBe(30_000)
        expect(Duration.toMillis(config.keepAliveTimeout)).toBe(65_000)
        expect(Duration.toMillis(config.drainTimeout)).toBe(30_000)
      })
  )

  it.effect("reads every variable; an option wins over its variable; blank variables are unset", () =>
    Effect.gen(function* () {
      const config = yield* resolveWith(
        { port: 9002 },
        {
          WORKER_PORT: "9001",
          WORKER_HOST: "127.0.0.1",
          WORKER_MAX_BODY_SIZE: "1048576",
          WORKER_CALL_TIMEOUT: "2 minutes",
          WORKER_DRAIN_TIMEOUT: "0 seconds",
          WORKER_MAX_QUEUE_TIME: "500 millis",
          WORKER_HEADERS_TIMEOUT: "10 seconds",
          WORKER_BODY_TIMEOUT: "1 minute",
          WORKER_KEEP_ALIVE_TIMEOUT: "5 seconds",
          WORKER_MAX_CONNECTIONS: "64",
          WORKER_ON_STARTUP_FAILURE: "stay",
          WORKER_TOKEN: "secret"
        }
      )
      expect(config.port).toBe(9002)
      expect(config).toMatchObject({
        host: "127.0.0.1",
        maxBodySize: 1048576,
        maxConnections: 64,
        onStartupFailure: "stay",
        auth: { mode: "token" }
      })
      expect(Duration.toMillis(config.callTimeout!)).toBe(120_000)
      expect(Duration.toMillis(config.drainTimeout)).toBe(0)
      expect(Duration.toMillis(config.maxQueueTime!)).toBe(500)
      expect(Duration.toMillis(config.headersTimeout)).toBe(10_000)
      expect(Duration.toMillis(config.bodyTimeout)).toBe(60_000)
      expect(Duration.toMillis(config.keepAliveTimeout)).toBe(5_000)
      const blank = yield* resolveWith({}, { WORKER_MAX_BODY_SIZE: " ", WORKER_HOST: "" })
      expect(blank).toMatchObject({ maxBodySize: 32 * 1024 * 1024, host: undefined })
    })
  )

  it.effect("a variable with a value that is not allowed: the error names it, its value and what is allowed", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [Record<string, string>, string]> = [
        [{ WORKER_MAX_BODY_SIZE: "-5" }, `WORKER_MAX_BODY_SIZE: "got "-5"; expected a whole number of bytes from 1 to`],
        [{ WORKER_MAX_BODY_SIZE: "0" }, `WORKER_MAX_BODY_SIZE: "got "0"; expected a whole number of bytes`],
        [{ WORKER_MAX_BODY_SIZE: "1e6" }, `WORKER_MAX_BODY_SIZE: "got "1e6"`],
        [{ WORKER_MAX_BODY_SIZE: String(512 * 1024 * 1024) }, "to 268435456 (256 MiB)"],
        [{ WORKER_PORT: "65536" }, `WORKER_PORT: "got "65536"; expected a port number from 0 to 65535`],
        [{ WORKER_PORT: "http" }, `WORKER_PORT: "got "http"`],
        [{ WORKER_CALL_TIMEOUT: "-1 seconds" }, `WORKER_CALL_TIMEOUT: "got "-1 seconds"; expected a duration`],
        [{ WORKER_CALL_TIMEOUT: "0 seconds" }, "1 millisecond or more"],
        [{ WORKER_DRAIN_TIMEOUT: "-5 seconds" }, `WORKER_DRAIN_TIMEOUT: "got "-5 seconds"; expected a duration`],
        [{ WORKER_BODY_TIMEOUT: "30" }, `WORKER_BODY_TIMEOUT: "got "30"; expected a duration such as "30 seconds"`],
        [{ WORKER_HEADERS_TIMEOUT: "100 days" }, `WORKER_HEADERS_TIMEOUT: "got "100 days"`],
        [{ WORKER_KEEP_ALIVE_TIMEOUT: "soon" }, `WORKER_KEEP_ALIVE_TIMEOUT: "got "soon"`],
        [{ WORKER_MAX_QUEUE_TIME: "0 millis" }, `WORKER_MAX_QUEUE_TIME: "got "0 millis"`],
        [{ WORKER_MAX_CONNECTIONS: "0" }, `WORKER_MAX_CONNECTIONS: "got "0"; expected a whole number of connections`],
        [
          { WORKER_ON_STARTUP_FAILURE: "restart" },
          `WORKER_ON_STARTUP_FAILURE: "got "restart"; expected one of "exit", "stay"`
        ],
        [{ WORKER_AUTH: "tokn" }, `WORKER_AUTH: "got "tokn"; expected one of "none", "token", "signed"`],
        [{ UNSECURED: "maybe" }, `UNSECURED: "got "maybe"; expected true or false`],
        [
          { REPORT_ADDR: "engine:8080" },
          `REPORT_ADDR: "got "engine:8080"; expected one or more http:// or https:// URLs`
        ],
        [{ WORKER_AUTH: "token", WORKER_TOKEN: " " }, "WORKER_TOKEN"],
        [{ WORKER_AUTH: "signed" }, "WORKER_AUTH=signed needs WORKER_PUBLIC_KEY or REPORT_ADDR"],
        [
          { REPORT_ADDR: "http://engine", UNSECURED: "true", VAST_TCP_PORT_8000: "99999" },
          `VAST_TCP_PORT_8000: "got "99999"; expected a port number`
        ],
        [{ REPORT_ADDR: "http://engine", UNSECURED: "true", CONTAINER_ID: "c-1" }, `CONTAINER_ID: "got "c-1"`]
      ]
      for (const [env, message] of cases) expect(yield* refused({}, env)).toContain(message)
    })
  )

  it.effect("a bad PEM in WORKER_PUBLIC_KEY or auth.publicKey names where it came from; a good one passes", () =>
    Effect.gen(function* () {
      const bad = yield* refused({}, { WORKER_AUTH: "signed", WORKER_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\nnope" })
      expect(bad).toContain("WORKER_PUBLIC_KEY")
      expect(bad).toContain("not a public key")
      expect(bad).toContain("expected an RSA public key in PEM")
      expect(yield* refused({ auth: { mode: "signed", publicKey: "nope" } })).toContain("auth.publicKey")
      const ec = Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
        .publicKey.export({ type: "spki", format: "pem" })
        .toString()
      expect(yield* refused({}, { WORKER_AUTH: "signed", WORKER_PUBLIC_KEY: ec })).toContain("a ec key")
      const { publicKey } = keyPair()
      const good = yield* resolveWith({}, { WORKER_AUTH: "signed", WORKER_PUBLIC_KEY: publicKey })
      // Variables are trimmed (the PEM's last line break goes).
      expect(good.auth).toMatchObject({ mode: "signed", publicKey: publicKey.trim() })
      // One line with literal "\n" (how some platforms pass a PEM in the environment) is the same key.
      const oneLine = yield* resolveWith(
        {},
        { WORKER_AUTH: "signed", WORKER_PUBLIC_KEY: publicKey.replace(/\n/g, "\\n") }
      )
      expect(oneLine.auth).toMatchObject({ mode: "signed", publicKey })
    })
  )

  it.effect("an option with a value that is not allowed names the option", () =>
    Effect.gen(function* () {
      expect(yield* refused({ maxBodySize: -5 })).toContain(`maxBodySize: "got -5; expected a whole number of bytes`)
      expect(yield* refused({ maxBodySize: 1.5 })).toContain(`maxBodySize: "got 1.5`)
      expect(yield* refused({ port: 8000.5 })).toContain(`port: "got 8000.5`)
      expect(yield* refused({ bodyTimeout: -1 })).toContain(`bodyTimeout: "got -1; expected a duration`)
      expect(yield* refused({ headersTimeout: 0 })).toContain(`headersTimeout: "got 0`)
      expect(yield* refused({ keepAliveTimeout: Duration.infinity })).toContain(`keepAliveTimeout: "got Infinity`)
      expect(yield* refused({ drainTimeout: "-1 seconds" })).toContain(`drainTimeout: "got "-1 seconds"`)
      expect(yield* refused({ maxConnections: 0 })).toContain(`maxConnections: "got 0`)
      expect(yield* refused({ onStartupFailure: "never" as "exit" })).toContain(`onStartupFailure: "got "never"`)
      expect(yield* refused({ host: " " })).toContain(`host: "got " "`)
      expect(yield* refused({ handleSignals: "no" as unknown as boolean })).toContain(`handleSignals: "got "no"`)
      expect(yield* refused({ auth: { mode: "token", token: "" } })).toContain("auth.token")
      expect(yield* refused({ auth: { mode: "nobody" } as unknown as WorkerConfig.Auth })).toContain(
        `auth: "got {"mode":"nobody"}`
      )
      // The option wins: a bad variable it overrides is not read.
      const config = yield* resolveWith({ maxBodySize: 1024 }, { WORKER_MAX_BODY_SIZE: "-5" })
      expect(config.maxBodySize).toBe(1024)
    })
  )
})
