/**
 * The smallest deployment: one remote that squares a number, with the benchmark the engine needs.
 *
 * Serve it with `npx effect-deployments serve examples/square.ts` (or `npx tsx examples/square.ts`), then:
 *
 * ```sh
 * curl -s localhost:8000/remote/square -H 'content-type: application/json' -d '{"payload": {"kwargs": {"x": 5}}}'
 * # {"result":{"ok":25}}
 * ```
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer } from "effect"
import { pathToFileURL } from "node:url"
import { Deployment, Remote, Worker } from "effect-deployments"
import * as Spec from "./square-spec.js"

/** `square(x) = x * x`: the definition in square-spec.ts, implemented. */
export const square = Remote.implement(
  Spec.square,
  { benchmark: { dataset: [{ x: 2 }, { x: 3 }], runs: 3 } },
  ({ x }) => Effect.succeed(x * x)
)

/** The deployment: no contexts, one remote. */
export const app = Deployment.make("square", { contexts: [], remotes: [square] })

export default app

// Run as a main (`tsx examples/square.ts`), not when imported by the CLI or a test.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(Layer.launch(Worker.serve(app)), { teardown: Worker.teardown })
}
