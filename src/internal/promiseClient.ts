/**
 * The Promise edge of the typed client (`WorkerClient.makePromise`). With App.ts, the only place in src that runs
 * effects for Promise callers; kept apart from App.ts so that a client imports no server code.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import { Cause, Effect, Exit, ManagedRuntime, Stream } from "effect"
import * as Remote from "../Remote.js"
import * as iterable from "./asyncIterable.js"
import * as internal from "./client.js"
import * as TlsClient from "./tlsClient.js"

// One runtime for every Promise client: the fetch client holds no resources, so it never needs disposing.
let runtime: ManagedRuntime.ManagedRuntime<HttpClient.HttpClient, never> | undefined

/** A client whose calls return Promises that reject with the error value itself, not a FiberFailure. @internal */
export const make = <Defs extends Remote.AnyDefinitionSpec>(
  spec: internal.Spec<Defs>,
  options: internal.Options & { readonly tls?: TlsClient.ClientOptions | undefined }
): Record<string, (payload: unknown) => Promise<unknown> | AsyncIterable<unknown>> => {
  type Methods = Record<string, (payload: unknown) => Effect.Effect<unknown, unknown> | Stream.Stream<unknown, unknown>>
  type Rt = ManagedRuntime.ManagedRuntime<HttpClient.HttpClient, never>
  const run = (rt: Rt, result: Effect.Effect<unknown, unknown> | Stream.Stream<unknown, unknown>) =>
    // A stream remote's method builds its Stream without requirements (the HTTP client is captured already).
    !Effect.isEffect(result)
      ? iterable.make(result)
      : rt.runPromiseExit(result).then((exit) => {
          if (Exit.isSuccess(exit)) return exit.value
          throw Cause.squash(exit.cause)
        })
  const out: Record<string, (payload: unknown) => Promise<unknown> | AsyncIterable<unknown>> = {}
  if (options.tls === undefined) {
    const rt = (runtime ??= ManagedRuntime.make(FetchHttpClient.layer))
    const client = rt.runSync(internal.make(spec, options)) as unknown as Methods
    for (const [name, call] of Object.entries(client)) out[name] = (payload) => run(rt, call(payload))
    return out
  }
  // A client with TLS options has its own agents (its runtime lives as long as the client does). Its layer imports
  // node's HTTP client when it is built (see tlsClient.ts), so the client is made at the first call.
  const rt: Rt = ManagedRuntime.make(TlsClient.clientLayer(options.tls))
  let client: Promise<Methods> | undefined
  const methods = () => (client ??= rt.runPromise(internal.make(spec, options)) as unknown as Promise<Methods>)
  const remotes: ReadonlyArray<unknown> = Array.isArray(spec)
    ? spec
    : [...(spec as { remotes: ReadonlyMap<string, unknown> }).remotes.values()]
  for (const remote of remotes) {
    if (Remote.isStreamSpec(remote)) {
      const name = remote.name
      out[name] = (payload) =>
        iterable.make(
          Stream.unwrap(
            Effect.map(Effect.promise(methods), (m) => m[name]!(payload) as Stream.Stream<unknown, unknown>)
          )
        )
    } else if (Remote.isSpec(remote)) {
      const name = remote.name
      out[name] = (payload) => methods().then((m) => run(rt, m[name]!(payload)))
    }
  }
  return out
}
