/**
 * The typed client of a served worker: one method per remote of a deployment, typed from its Schemas, speaking the
 * reference wire format over HTTP.
 *
 * @since 0.1.0
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import type { Duration, Effect, Layer, Redacted, Schema } from "effect"
import * as internal from "./internal/client.js"
import * as promise from "./internal/promiseClient.js"
import * as TlsClient from "./internal/tlsClient.js"
import type * as Remote from "./Remote.js"

/** Options of {@link make}. */
export interface Options {
  /** The worker's base URL, e.g. `http://127.0.0.1:8000`. */
  readonly url: string
  /** Sent as `Authorization: Bearer <token>` (a worker in `token` auth mode). */
  readonly token?: string | Redacted.Redacted<string> | undefined
  /**
   * How long to keep retrying a call the worker cannot take now (429, 503 except a failed start-up, connection
   * errors), from the first attempt. Default 30 seconds. A running call is never cut short by it.
   */
  readonly deadline?: Duration.DurationInput | undefined
  /** First retry delay; it doubles per attempt, with jitter. Default 100 ms. */
  readonly baseDelay?: Duration.DurationInput | undefined
  /** Longest single retry delay (also caps a `Retry-After`). Default 5 seconds. */
  readonly maxDelay?: Duration.DurationInput | undefined
}

/**
 * What a call can fail with besides the remote's declared error: the worker cannot take it (`WorkerUnavailable`, after
 * the retries), it failed there (`CallFailed`, with an id to find it in the worker's log) or timed out, or the worker
 * refused the request (`PayloadInvalid`, `PayloadTooLarge`, `RemoteNotFound`, `Unauthorized`).
 */
export type CallError = internal.CallError

/**
 * A client: for every remote of the deployment, `name(payload)` returns the remote's success type or fails with its
 * declared error type or a {@link CallError}. For a stream remote it returns a `Stream` of its elements, as the worker
 * sends them, failing with the same errors (midway, after the elements before the failure).
 */
export type Client<Remotes extends Remote.AnyDefinitionSpec> = internal.Client<Remotes>

/**
 * What a client is made from: a `Deployment` (its remotes), or the remotes' definitions alone (`Remote.define`), so
 * that a caller imports a small spec module instead of the handlers, their contexts and models.
 */
export type Spec<Remotes extends Remote.AnyDefinitionSpec> = internal.Spec<Remotes>

/**
 * Make a client for the worker at `options.url` serving `spec` (a deployment, or its remotes' definitions). Needs an
 * `HttpClient` (for example `FetchHttpClient.layer` or `NodeHttpClient.layerUndici`); interrupting a call aborts its
 * request, which interrupts the remote on the worker. 429, 503 and connection errors are retried (a `Schedule`:
 * exponential backoff with jitter, at least the worker's `Retry-After`) until `deadline`. A stream remote's call is
 * retried only until the worker answers `200`: once elements may have arrived, a cut connection fails the stream
 * (`CallFailed`, reason `transport`).
 *
 * @example
 * ```ts
 * const program = Effect.gen(function*() {
 *   const client = yield* WorkerClient.make([square], { url: "http://127.0.0.1:8000" }) // or make(app, ...)
 *   return yield* client.square({ x: 5 }) // 25
 * }).pipe(Effect.provide(FetchHttpClient.layer))
 * ```
 */
export const make: <Remotes extends Remote.AnyDefinitionSpec>(
  spec: Spec<Remotes>,
  options: Options
) => Effect.Effect<Client<Remotes>, never, HttpClient.HttpClient> = internal.make

/**
 * The Promise form of {@link Client}: the same methods, resolving or rejecting with the same error values; a stream
 * remote's gives an `AsyncIterable` (`for await`), whose `next()` rejects with the error value at a failure.
 */
export type PromiseClient<Remotes extends Remote.AnyDefinitionSpec> = {
  readonly [Rm in Remotes as Rm["name"]]: Rm extends Remote.AnyStreamSpec
    ? (payload: Schema.Schema.Type<Rm["payload"]>) => AsyncIterable<Schema.Schema.Type<Rm["element"]>>
    : Rm extends Remote.AnySpec
      ? (payload: Schema.Schema.Type<Rm["payload"]>) => Promise<Schema.Schema.Type<Rm["success"]>>
      : never
}

/**
 * How a client reaches a worker that serves TLS (`USE_SSL=true`):
 *
 * - `ca`: certificate authorities to trust instead of Node's defaults (PEM), e.g. the platform's root certificate or a
 *   worker's self-signed one;
 * - `agent`: a `node:https` Agent of your own (proxies, client certificates, socket limits); it wins over `ca`.
 */
export interface TlsOptions extends TlsClient.ClientOptions {}

/**
 * An `HttpClient` for {@link make} that reaches `https://` workers with the given TLS options (over node:http and
 * node:https; agents it makes are closed with the layer).
 *
 * @example
 * ```ts
 * const client = yield* WorkerClient.make(app, { url: "https://10.0.0.5:8000" }).pipe(
 *   Effect.provide(WorkerClient.layerTls({ ca: fs.readFileSync("instance.crt") }))
 * )
 * ```
 */
export const layerTls: (options: TlsOptions) => Layer.Layer<HttpClient.HttpClient> = TlsClient.clientLayer

/** Options of {@link makePromise}: those of {@link make}, and `tls` for an `https://` worker. */
export interface PromiseOptions extends Options {
  readonly tls?: TlsOptions | undefined
}

/**
 * {@link make} for Promise callers (over `fetch`; over node:https with the `tls` option). A call rejects with the error value itself (`instanceof` works:
 * the remote's declared error, `WorkerUnavailable`, `CallFailed`, ...), not a wrapper.
 *
 * @example
 * ```ts
 * const client = WorkerClient.makePromise(app, { url: "http://127.0.0.1:8000" })
 * await client.square({ x: 5 }) // 25
 * for await (const token of client.generate({ prompt: "Hi" })) process.stdout.write(token) // a stream remote
 * ```
 */
export const makePromise = <Remotes extends Remote.AnyDefinitionSpec>(
  spec: Spec<Remotes>,
  options: PromiseOptions
): PromiseClient<Remotes> => promise.make(spec, options) as unknown as PromiseClient<Remotes>

/** Re-exported so a Promise caller can build the Effect client on the same transport. */
export const layerFetch: typeof FetchHttpClient.layer = FetchHttpClient.layer
