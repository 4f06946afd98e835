import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Effect, Either, Redacted, Schedule } from "effect"
import type { Scope } from "effect"
import type * as Crypto from "node:crypto"
import type * as Http from "node:http"
import type * as Wire from "../Wire.js"
import type { Auth } from "../WorkerConfig.js"
import { Unauthorized, WorkerUnavailable } from "../WorkerError.js"
import { parsePublicKey, tokenEquals, verifySignature } from "./signature.js"

/** How a request's caller is checked, in two steps of the call pipeline. */
export interface Authenticator {
  /** Checked before the body is read: a caller without the token sends nothing the worker reads. */
  readonly header: (headers: Http.IncomingHttpHeaders) => Unauthorized | undefined
  /** Checked once the envelope is decoded; `WorkerUnavailable` while the engine's key is not loaded yet. */
  readonly envelope: (envelope: Wire.Envelope) => Unauthorized | WorkerUnavailable | undefined
  /** Whether the authenticator can decide now (the public key is loaded): `/ready` waits for it. */
  readonly ready: () => boolean
}

const fetchPublicKey = (reportAddr: string) =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const addresses = reportAddr
      .split(",")
      .map((a) => a.trim().replace(/\/+$/, ""))
      .filter((a) => a.length > 0)
    let lastError: unknown = undefined
    for (const address of addresses) {
      const result = yield* client.get(`${address}/pubkey/`).pipe(
        Effect.flatMap(HttpClientResponse.filterStatusOk),
        Effect.flatMap((response) => response.text),
        Effect.flatMap((pem) => Effect.try(() => parsePublicKey(pem))),
        Effect.either
      )
      if (Either.isRight(result)) return result.right
      lastError = result.left
    }
    return yield* Effect.fail(lastError)
  }).pipe(Effect.provide(FetchHttpClient.layer))

const open: Authenticator = { header: () => undefined, envelope: () => undefined, ready: () => true }

/** The authenticator of an auth mode; a `signed` one without a key fetches it in the background, retrying. */
export const make = (auth: Auth): Effect.Effect<Authenticator, never, Scope.Scope> =>
  Effect.gen(function* () {
    switch (auth.mode) {
      case "none":
        return open
      case "token": {
        const token = Redacted.isRedacted(auth.token) ? Redacted.value(auth.token) : auth.token
        // An empty token would refuse every call while looking configured: fail loudly at start instead.
        if (token.trim() === "") return yield* Effect.dieMessage("auth token mode needs a non-empty token")
        return {
          header: (headers) => {
            const header = headers["authorization"]
            if (header === undefined) return new Unauthorized({ reason: "missing", detail: "no Authorization header" })
            const match = /^Bearer\s+(.+)$/i.exec(header)
            if (match === null || !tokenEquals(match[1]!.trim(), token)) {
              return new Unauthorized({ reason: "invalid", detail: "the bearer token does not match" })
            }
            return undefined
          },
          envelope: () => undefined,
          ready: () => true
        }
      }
      case "signed": {
        let key: Crypto.KeyObject | undefined =
          auth.publicKey === undefined ? undefined : parsePublicKey(auth.publicKey)
        if (key === undefined && auth.reportAddr !== undefined) {
          const reportAddr = auth.reportAddr
          yield* fetchPublicKey(reportAddr).pipe(
            Effect.tapError((e) =>
              Effect.logWarning(`Could not fetch the public key from ${reportAddr}/pubkey/; retrying`, e)
            ),
            Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds")))),
            Effect.flatMap((k) =>
              Effect.sync(() => {
                key = k
              })
            ),
            Effect.forkScoped
          )
        }
        return {
          header: () => undefined,
          envelope: (envelope) => {
            if (key === undefined) {
              return new WorkerUnavailable({ reason: "starting", detail: "the engine's public key is not loaded yet" })
            }
            const data = envelope.auth_data
            if (data?.signature === undefined || data.url === undefined) {
              return new Unauthorized({
                reason: "missing",
                detail: "auth_data.signature and auth_data.url are required"
              })
            }
            return verifySignature({ publicKeyPem: key, url: data.url, signatureBase64: data.signature })
              ? undefined
              : new Unauthorized({ reason: "invalid", detail: "the signature does not match auth_data.url" })
          },
          ready: () => key !== undefined
        }
      }
    }
  })
