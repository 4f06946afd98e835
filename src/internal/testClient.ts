import { Effect, ParseResult, Schema } from "effect"
import type { Scope } from "effect"
import type * as Deployment from "../Deployment.js"
import type * as Remote from "../Remote.js"
import * as Wire from "../Wire.js"
import * as Worker from "../Worker.js"
import type { Client } from "../WorkerClient.js"
import { CallFailed, FieldIssue, PayloadInvalid, RemoteFailure } from "../WorkerError.js"
import type { StartupFailed } from "../WorkerError.js"

/** @internal */
export interface TestWorker<Provides, Remotes extends Remote.Any> {
  readonly worker: Worker.Worker<Provides, Remotes>
  readonly client: Client<Remotes>
}

const asSchema = (schema: Schema.Schema.All) => schema as unknown as Schema.Schema<unknown, unknown, never>

const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<FieldIssue> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map(
    (i) => new FieldIssue({ path: [...i.path] as Array<string | number>, message: i.message })
  )

/** A value through the wire's encoding and JSON and back, as it travels between a worker and its HTTP client. */
const overTheWire = (value: unknown) =>
  Effect.flatMap(Wire.encodeValue(value), (json) => Wire.decodeValue(JSON.parse(JSON.stringify(json))))

/**
 * One remote's method: the payload and the result go through the remote's Schemas and the wire's value encoding as
 * they do between `WorkerClient` and a served worker, and the worker runs the call through `invoke`, the path its
 * HTTP server takes; only HTTP itself (sockets, status codes, auth, retries) is left out.
 */
const method =
  (worker: Worker.Worker, remote: Remote.Any) =>
  (payload: unknown): Effect.Effect<unknown, unknown> =>
    Effect.gen(function* () {
      const name = remote.name
      const protocol = (detail: string) => new CallFailed({ remote: name, reason: "protocol", detail })
      const encoded = yield* Schema.encodeUnknown(asSchema(remote.payload))(payload).pipe(
        Effect.mapError((e) => new PayloadInvalid({ remote: name, issues: issuesOf(e) }))
      )
      const kwargs: Record<string, unknown> = {}
      for (const [key, value] of Object.entries(encoded as Record<string, unknown>)) {
        if (value === undefined) continue
        kwargs[key] = yield* Effect.mapError(overTheWire(value), (e) => protocol(e.message))
      }
      const result = yield* worker.invoke(name, kwargs).pipe(
        Effect.catchIf(
          (e): e is RemoteFailure => e instanceof RemoteFailure,
          // The remote's declared error, decoded from the form the worker encoded it in, as the client decodes it
          (e) =>
            Schema.decodeUnknown(asSchema(remote.error))(e.encoded).pipe(
              Effect.mapError((parse) => protocol(`the worker sent an undeclared error: ${parse.message}`)),
              Effect.flatMap(Effect.fail)
            )
        )
      )
      const received = yield* Effect.mapError(
        overTheWire(result),
        (e) => new CallFailed({ remote: name, reason: "encode", detail: e.message })
      )
      return yield* Effect.mapError(Schema.decodeUnknown(asSchema(remote.success))(received), (e) =>
        protocol(`the result does not match the success schema: ${e.message}`)
      )
    })

/** @internal */
export const make = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: Worker.Options
): Effect.Effect<TestWorker<Provides, Remotes>, StartupFailed, Scope.Scope> =>
  Effect.map(Worker.make(deployment, { benchmark: false, ...options }), (worker) => {
    const client: Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>> = {}
    for (const remote of deployment.remotes.values()) client[remote.name] = method(worker, remote)
    return { worker, client: client as unknown as Client<Remotes> }
  })
