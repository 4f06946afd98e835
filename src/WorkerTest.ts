/**
 * Testing a deployment's remotes without a server: an in-process worker and a client with the typed client's
 * interface, for `@effect/vitest` tests. Replace a context with a test double first with `Deployment.override`.
 * Both run on Effect's `Clock`, so under `TestClock` a context that loads for 30 seconds enters as soon as the test
 * adjusts the clock.
 *
 * @example
 * ```ts
 * import { it, expect } from "@effect/vitest"
 * import { Deployment, WorkerTest } from "effect-deployments"
 *
 * it.scoped("generate", () =>
 *   Effect.gen(function*() {
 *     const client = yield* WorkerTest.client(Deployment.override(app, Model, Layer.succeed(Model, fakeModel)))
 *     expect(yield* client.generate({ prompt: "the cat", maxTokens: 2 })).toBe("the cat sat on")
 *   }))
 * ```
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import type * as Deployment from "./Deployment.js"
import * as internal from "./internal/testClient.js"
import type * as Remote from "./Remote.js"
import type * as Worker from "./Worker.js"
import type * as WorkerClient from "./WorkerClient.js"
import type { StartupFailed } from "./WorkerError.js"

/** A worker started in the test's scope, and a client calling it in process. */
export interface TestWorker<Provides, Remotes extends Remote.Definition> {
  /** The worker itself: its `report`, `status`, `metrics`, `shutdown`, ... */
  readonly worker: Worker.Worker<Provides, Remotes>
  /** The typed client's methods, calling the worker in process. */
  readonly client: WorkerClient.Client<Remotes>
}

/**
 * Start the deployment in process (in the current scope, shut down when it closes) and wait until it is ready, like
 * `Worker.make`, but without the benchmark unless `options.benchmark` is `true` (a test double rarely makes a
 * meaningful score, and the benchmark's calls would reach it). Fails with `StartupFailed` as `Worker.make` does.
 *
 * The client's methods have `WorkerClient.Client`'s types and errors: the payload and the result go through the
 * remote's Schemas and the wire's value encoding as between a `WorkerClient` and a served worker, so a result the
 * wire cannot carry fails here too. HTTP itself is left out: no sockets, status codes, auth or retries (a refused
 * call fails at once with `WorkerUnavailable`).
 */
export const make: <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: Worker.Options
) => Effect.Effect<TestWorker<Provides, Remotes>, StartupFailed, Scope.Scope> = internal.make

/**
 * {@link make}, for the client alone.
 *
 * @example
 * ```ts
 * const client = yield* WorkerTest.client(app)
 * const n = yield* client.square({ x: 3 }) // 9: a number, typed from the remote's success schema
 * ```
 */
export const client = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options?: Worker.Options
): Effect.Effect<WorkerClient.Client<Remotes>, StartupFailed, Scope.Scope> =>
  Effect.map(internal.make(deployment, options), (made) => made.client)
