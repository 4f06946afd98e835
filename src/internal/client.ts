import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Duration, Effect, Either, ParseResult, Redacted, Schedule, Schema, Stream } from "effect"
import * as Remote from "../Remote.js"
import * as Wire from "../Wire.js"
import {
  CallFailed,
  CallTimeout,
  FieldIssue,
  PayloadInvalid,
  PayloadTooLarge,
  RemoteNotFound,
  Unauthorized,
  WorkerUnavailable
} from "../WorkerError.js"
import { formatIssues } from "./issues.js"
import * as ndjson from "./ndjson.js"

/** The public options, documented in WorkerClient.ts (a type-only import). @internal */
export type Options = import("../WorkerClient.js").Options

/** @internal */
export type CallError =
  WorkerUnavailable | CallFailed | CallTimeout | PayloadInvalid | PayloadTooLarge | RemoteNotFound | Unauthorized

/** What a client is made from: a deployment, or the remotes' definitions alone. @internal */
export type Spec<Defs extends Remote.AnyDefinitionSpec> =
  { readonly remotes: ReadonlyMap<string, Defs> } | ReadonlyArray<Defs>

/** One remote's method: an Effect of its success, or for a stream remote a Stream of its elements. @internal */
export type Method<Rm extends Remote.AnyDefinitionSpec> = Rm extends Remote.AnyStreamSpec
  ? (
      payload: Schema.Schema.Type<Rm["payload"]>
    ) => Stream.Stream<Schema.Schema.Type<Rm["element"]>, Schema.Schema.Type<Rm["error"]> | CallError>
  : Rm extends Remote.AnySpec
    ? (
        payload: Schema.Schema.Type<Rm["payload"]>
      ) => Effect.Effect<Schema.Schema.Type<Rm["success"]>, Schema.Schema.Type<Rm["error"]> | CallError>
    : never

/** @internal */
export type Client<Remotes extends Remote.AnyDefinitionSpec> = {
  readonly [Rm in Remotes as Rm["name"]]: Method<Rm>
}

// What a worker answers with a non-200 status: one of our errors as JSON.
const ServerError = Schema.Union(
  WorkerUnavailable,
  CallFailed,
  CallTimeout,
  PayloadInvalid,
  PayloadTooLarge,
  RemoteNotFound,
  Unauthorized
)
const decodeServerError = Schema.decodeUnknownEither(ServerError)
const isCallError = Schema.is(ServerError)

const protocol = (remote: string, detail: string) => new CallFailed({ remote, reason: "protocol", detail })

const asSchema = (schema: Schema.Schema.All) => schema as unknown as Schema.Schema<unknown, unknown, never>

// Bounded (internal/issues.ts): a 400 echoes at most a few issues, with previews of the values, never the values.
const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<FieldIssue> =>
  formatIssues(error).map((i) => new FieldIssue(i))

const retryable = (e: unknown): e is WorkerUnavailable => e instanceof WorkerUnavailable && e.reason !== "failed"

/**
 * Retry 429/503/unreachable: exponential backoff from `base` with jitter, each delay capped at `max` but never shorter
 * than the worker's `Retry-After` (itself capped at `max`), until `deadline` has passed since the first retry.
 */
const retryPolicy = (deadline: Duration.Duration, base: Duration.Duration, max: Duration.Duration) =>
  Schedule.identity<unknown>().pipe(
    Schedule.intersect(Schedule.exponential(base)),
    Schedule.modifyDelay(([error, backoff]) => {
      const cap = Duration.toMillis(max)
      const retryAfter = error instanceof WorkerUnavailable ? (error.retryAfterMillis ?? 0) : 0
      return Math.max(Math.min(cap, Duration.toMillis(backoff)), Math.min(cap, retryAfter))
    }),
    Schedule.jitteredWith({ min: 0.5, max: 1 }),
    Schedule.whileInput(retryable),
    Schedule.upTo(deadline)
  )

const readJson = (response: HttpClientResponse.HttpClientResponse, remote: string) =>
  Effect.flatMap(
    Effect.mapError(response.text, (e) => new WorkerUnavailable({ reason: "unreachable", detail: e.message })),
    (text) =>
      Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: () => protocol(remote, `HTTP ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`)
      })
  )

/** @internal */
export const make = <Defs extends Remote.AnyDefinitionSpec>(
  spec: Spec<Defs>,
  options: Options
): Effect.Effect<Client<Defs>, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (http) => {
    const base = options.url.replace(/\/+$/, "")
    const token =
      options.token === undefined
        ? undefined
        : Redacted.isRedacted(options.token)
          ? Redacted.value(options.token)
          : options.token
    const retry = retryPolicy(
      Duration.decode(options.deadline ?? Duration.seconds(30)),
      Duration.decode(options.baseDelay ?? Duration.millis(100)),
      Duration.decode(options.maxDelay ?? Duration.seconds(5))
    )

    /** The request of a call: the payload encoded by its Schema, then as keyword arguments in the wire encoding. */
    const requestOf = (remote: Remote.AnyDefinitionSpec, payload: unknown) =>
      Effect.gen(function* () {
        const name = remote.name
        const encoded = yield* Schema.encodeUnknown(asSchema(remote.payload))(payload).pipe(
          Effect.mapError((e) => new PayloadInvalid({ remote: name, issues: issuesOf(e) }))
        )
        const kwargs: Record<string, Wire.Json> = {}
        for (const [key, value] of Object.entries(encoded as Record<string, unknown>)) {
          if (value === undefined) continue
          kwargs[key] = yield* Effect.mapError(Wire.encodeValue(value), (e) => protocol(name, e.message))
        }
        let request = HttpClientRequest.post(`${base}/remote/${encodeURIComponent(name)}`).pipe(
          HttpClientRequest.bodyText(JSON.stringify({ payload: { kwargs } }), "application/json")
        )
        if (token !== undefined) request = HttpClientRequest.bearerToken(request, token)
        return request
      })

    /** A non-200 answer: one of the worker's errors, or a protocol error naming the status. */
    const refusal = (response: HttpClientResponse.HttpClientResponse, name: string) =>
      Effect.flatMap(readJson(response, name), (body) => {
        const known = decodeServerError(body)
        if (Either.isRight(known)) return Effect.fail(known.right)
        return Effect.fail(protocol(name, `HTTP ${response.status}: ${JSON.stringify(body).slice(0, 500)}`))
      })

    const callRemote = (remote: Remote.AnySpec) => (payload: unknown) =>
      Effect.gen(function* () {
        const name = remote.name
        const request = yield* requestOf(remote, payload)

        const attempt = Effect.gen(function* () {
          const response = yield* Effect.mapError(
            http.execute(request),
            (e) => new WorkerUnavailable({ reason: "unreachable", detail: e.message })
          )
          if (response.status !== 200) return yield* refusal(response, name)
          return yield* readJson(response, name)
        })
        const body = yield* Effect.retry(attempt, retry)

        const result = (body as { result?: { ok?: unknown; err?: unknown } } | null)?.result
        if (typeof result !== "object" || result === null) {
          return yield* Effect.fail(protocol(name, "the response has no `result`"))
        }
        if ("ok" in result) {
          const value = yield* Effect.mapError(Wire.decodeValue(result.ok), (e) => protocol(name, e.message))
          return yield* Effect.mapError(Schema.decodeUnknown(asSchema(remote.success))(value), (e) =>
            protocol(name, `the result does not match the success schema: ${e.message}`)
          )
        }
        if ("err" in result) {
          const decoded = yield* Effect.mapError(Wire.decodeError(result.err, asSchema(remote.error)), (e) =>
            protocol(name, e.message)
          )
          if (decoded._tag === "Declared") return yield* Effect.fail(decoded.error)
          // The remote's own failure the worker answered as an error (a result it could not send, a defect).
          if (decoded._tag === "Worker" && isCallError(decoded.error)) return yield* Effect.fail(decoded.error)
          const message = decoded._tag === "Worker" ? decoded.error.message : decoded.message
          return yield* Effect.fail(protocol(name, `the worker sent an undeclared error: ${message}`))
        }
        return yield* Effect.fail(protocol(name, "the response's `result` has neither `ok` nor `err`"))
      })

    /**
     * A stream remote's call: retried like any call until the worker answers 200 (nothing was streamed yet), then the
     * elements as the worker sends them, decoded by the element Schema. The request lives as long as the stream:
     * stopping early aborts it, which interrupts the stream on the worker.
     */
    const callStream = (remote: Remote.AnyStreamSpec) => (payload: unknown) =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const name = remote.name
          const request = yield* requestOf(remote, payload)
          const scoped = HttpClient.withScope(http)
          const attempt = Effect.gen(function* () {
            const response = yield* Effect.mapError(
              scoped.execute(request),
              (e) => new WorkerUnavailable({ reason: "unreachable", detail: e.message })
            )
            if (response.status !== 200) return yield* refusal(response, name)
            const type = response.headers["content-type"] ?? ""
            if (!type.startsWith(ndjson.contentType)) {
              return yield* Effect.fail(
                protocol(
                  name,
                  `a stream remote answered ${type || "without a content type"}, not ${ndjson.contentType}`
                )
              )
            }
            return response
          })
          const response = yield* Effect.retry(attempt, retry)
          return ndjson.decodeRemote(
            remote,
            // Past the status nothing is retried: elements may have been consumed already.
            Stream.mapError(
              response.stream,
              (e) => new CallFailed({ remote: name, reason: "transport", detail: `the stream was cut: ${e.message}` })
            )
          )
        })
      )

    const client: Record<
      string,
      (payload: unknown) => Effect.Effect<unknown, unknown> | Stream.Stream<unknown, unknown>
    > = {}
    const remotes: ReadonlyArray<unknown> = Array.isArray(spec)
      ? spec
      : [...(spec as { remotes: ReadonlyMap<string, unknown> }).remotes.values()]
    for (const remote of remotes) {
      if (Remote.isStreamSpec(remote)) client[remote.name] = callStream(remote)
      else if (Remote.isSpec(remote)) client[remote.name] = callRemote(remote)
    }
    return client as unknown as Client<Defs>
  })
