import { Effect, ParseResult, Schema, Stream } from "effect"
import type { Scope } from "effect"
import type * as Deployment from "../Deployment.js"
import type * as Remote from "../Remote.js"
import * as Wire from "../Wire.js"
import * as Worker from "../Worker.js"
import type { Client } from "../WorkerClient.js"
import { CallFailed, FieldIssue, PayloadInvalid, RemoteFailure } from "../WorkerError.js"
import type { StartupFailed } from "../WorkerError.js"

/** @internal */
export interface TestWorker<Provides, Remotes extends Remote.Definition> {
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
 * The calls of one remote, as `WorkerClient` makes them but in process: the payload and every result go through the
 * remote's Schemas and the wire's value encoding as between a client and a served worker, and the worker runs the
 * call through `invoke`, the path its HTTP server takes; only HTTP itself (sockets, status codes, auth, retries) is
 * left out.
 */
const calls = (worker: Worker.Worker, remote: Remote.Definition) => {
  const name = remote.name
  const protocol = (detail: string) => new CallFailed({ remote: name, reason: "protocol", detail })
  const kwargsOf = (payload: unknown) =>
    Effect.gen(function* () {
      const encoded = yield* Schema.encodeUnknown(asSchema(remote.payload))(payload).pipe(
        Effect.mapError((e) => new PayloadInvalid({ remote: name, issues: issuesOf(e) }))
      )
      const kwargs: Record<string, unknown> = {}
      for (const [key, value] of Object.entries(encoded as Record<string, unknown>)) {
        if (value === undefined) continue
        kwargs[key] = yield* Effect.mapError(overTheWire(value), (e) => protocol(e.message))
      }
      return kwargs
    })
  // The remote's declared error, decoded from the form the worker encoded it in, as the client decodes it
  const declared = (e: unknown): Effect.Effect<never, unknown> =>
    e instanceof RemoteFailure
      ? Schema.decodeUnknown(asSchema(remote.error))(e.encoded).pipe(
          Effect.mapError((parse) => protocol(`the worker sent an undeclared error: ${parse.message}`)),
          Effect.flatMap(Effect.fail)
        )
      : Effect.fail(e)
  const received = (schema: Schema.Schema.Any, what: string) => (value: unknown) =>
    Effect.mapError(
      overTheWire(value),
      (e) => new CallFailed({ remote: name, reason: "encode", detail: e.message })
    ).pipe(
      Effect.flatMap((value) =>
        Effect.mapError(Schema.decodeUnknown(asSchema(schema))(value), (e) =>
          protocol(`the ${what} does not match its schema: ${e.message}`)
        )
      )
    )

  if (remote.kind === "stream") {
    const element = received(remote.element, "element")
    return (payload: unknown): Stream.Stream<unknown, unknown> =>
      Stream.unwrap(
        Effect.map(
          Effect.flatMap(kwargsOf(payload), (kwargs) => Effect.catchAll(worker.invoke(name, kwargs), declared)),
          (elements) =>
            (elements as Stream.Stream<unknown, unknown>).pipe(
              Stream.catchAll((e) => Stream.fromEffect(declared(e))),
              Stream.mapEffect(element)
            )
        )
      )
  }
  const success = received(remote.success, "result")
  return (payload: unknown): Effect.Effect<unknown, unknown> =>
    kwargsOf(payload).pipe(
      Effect.flatMap((kwargs) => Effect.catchAll(worker.invoke(name, kwargs), declared)),
      Effect.flatMap(success)
    )
}

/** @internal */
export const make = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: Worker.Options
): Effect.Effect<TestWorker<Provides, Remotes>, StartupFailed, Scope.Scope> =>
  Effect.map(Worker.make(deployment, { benchmark: false, ...options }), (worker) => {
    const client: Record<string, ReturnType<typeof calls>> = {}
    for (const remote of deployment.remotes.values()) client[remote.name] = calls(worker, remote)
    return { worker, client: client as unknown as Client<Remotes> }
  })
