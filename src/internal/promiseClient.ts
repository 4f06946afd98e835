/**
 * The Promise edge of the typed client (`WorkerClient.makePromise`). With App.ts, the only place in src that runs
 * effects for Promise callers; kept apart from App.ts so that a client imports no server code.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import { Cause, Effect, Exit, ManagedRuntime, Stream } from "effect"
import type * as Remote from "../Remote.js"
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
  // A client with TLS options has its own agents (its runtime lives as long as the client does).
  const rt =
    options.tls === undefined
      ? (runtime ??= ManagedRuntime.make(FetchHttpClient.layer))
      : ManagedRuntime.make(TlsClient.clientLayer(options.tls))
  const client = rt.runSync(internal.make(spec, options)) as unknown as Record<
    string,
    (payload: unknown) => Effect.Effect<unknown, unknown> | Stream.Stream<unknown, unknown>
  >
  const out: Record<string, (payload: unknown) => Promise<unknown> | AsyncIterable<unknown>> = {}
  for (const [name, call] of Object.entries(client)) {
    out[name] = (payload) => {
      const result = call(payload)
      // A stream remote's method builds its Stream without requirements (the HTTP client is captured already).
      if (!Effect.isEffect(result)) return iterable.make(result)
      return rt.runPromiseExit(result).then((exit) => {
        if (Exit.isSuccess(exit)) return exit.value
        throw Cause.squash(exit.cause)
      })
    }
  }
  return out
}
