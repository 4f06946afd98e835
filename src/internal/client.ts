import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Clock, Duration, Effect, Either, ParseResult, Random, Redacted, Schema } from "effect"
import type * as Deployment from "../Deployment.js"
import type * as Remote from "../Remote.js"
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

/** The public options, documented in WorkerClient.ts (a type-only import). @internal */
export type Options = import("../WorkerClient.js").Options

/** @internal */
export type CallError =
  WorkerUnavailable | CallFailed | CallTimeout | PayloadInvalid | PayloadTooLarge | RemoteNotFound | Unauthorized

/** @internal */
export type Client<Remotes extends Remote.Any> = {
  readonly [Rm in Remotes as Rm["name"]]: (
    payload: Schema.Schema.Type<Rm["payload"]>
  ) => Effect.Effect<Schema.Schema.Type<Rm["success"]>, Schema.Schema.Type<Rm["error"]> | CallError>
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

const protocol = (remote: string, detail: string) => new CallFailed({ remote, reason: "protocol", detail })

const asSchema = (schema: Schema.Schema.All) => schema as unknown as Schema.Schema<unknown, unknown, never>

const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<FieldIssue> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map(
    (i) => new FieldIssue({ path: [...i.path] as Array<string | number>, message: i.message })
  )

const retryable = (e: unknown): e is WorkerUnavailable => e instanceof WorkerUnavailable && e.reason !== "failed"

/** Retry 429/503/unreachable with exponential backoff and full jitter, giving up when the deadline would pass. */
const withRetry = <A, E>(
  attempt: Effect.Effect<A, E>,
  deadline: number,
  base: number,
  max: number
): Effect.Effect<A, E> =>
  Effect.gen(function* () {
    const start = yield* Clock.currentTimeMillis
    for (let n = 0; ; n++) {
      const result = yield* Effect.either(attempt)
      if (Either.isRight(result)) return result.right
      const e = result.left
      if (!retryable(e)) return yield* Effect.fail(e)
      const backoff = Math.min(max, base * 2 ** n) * (0.5 + (yield* Random.next) / 2)
      const wait = Math.max(backoff, Math.min(max, e.retryAfterMillis ?? 0))
      const now = yield* Clock.currentTimeMillis
      if (now + wait - start > deadline) return yield* Effect.fail(e)
      yield* Effect.sleep(Duration.millis(wait))
    }
  })

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
export const make = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: Options
): Effect.Effect<Client<Remotes>, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (http) => {
    const base = options.url.replace(/\/+$/, "")
    const token =
      options.token === undefined
        ? undefined
        : Redacted.isRedacted(options.token)
          ? Redacted.value(options.token)
          : options.token
    const deadline = Duration.toMillis(options.deadline ?? Duration.seconds(30))
    const baseDelay = Duration.toMillis(options.baseDelay ?? Duration.millis(100))
    const maxDelay = Duration.toMillis(options.maxDelay ?? Duration.seconds(5))

    const callRemote = (remote: Remote.Any) => (payload: unknown) =>
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

        const attempt = Effect.gen(function* () {
          const response = yield* Effect.mapError(
            http.execute(request),
            (e) => new WorkerUnavailable({ reason: "unreachable", detail: e.message })
          )
          const body = yield* readJson(response, name)
          if (response.status !== 200) {
            const known = decodeServerError(body)
            if (Either.isRight(known)) return yield* Effect.fail(known.right)
            return yield* Effect.fail(protocol(name, `HTTP ${response.status}: ${JSON.stringify(body).slice(0, 500)}`))
          }
          return body
        })
        const body = yield* withRetry(attempt, deadline, baseDelay, maxDelay)

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
          const value = yield* Effect.mapError(Wire.decodeValue(result.err), (e) => protocol(name, e.message))
          const declared = yield* Effect.either(Schema.decodeUnknown(asSchema(remote.error))(value))
          if (Either.isRight(declared)) return yield* Effect.fail(declared.right)
          const message = (value as { message?: unknown } | null)?.message
          return yield* Effect.fail(
            protocol(
              name,
              `the worker sent an undeclared error: ${typeof message === "string" ? message : JSON.stringify(value)}`
            )
          )
        }
        return yield* Effect.fail(protocol(name, "the response's `result` has neither `ok` nor `err`"))
      })

    const client: Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>> = {}
    for (const remote of deployment.remotes.values()) client[remote.name] = callRemote(remote)
    return client as unknown as Client<Remotes>
  })
