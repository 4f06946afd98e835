/**
 * The reference's first example, translated: one remote function, `square`, with a benchmark.
 *
 *   npx tsx examples/square.ts        # start it in process, call it, print the start-up report
 */
import { Console, Effect, Schema } from "effect"
import { pathToFileURL } from "node:url"
import { Deployment, Remote, Worker } from "effect-deployments"

/** `square({ x })` returns `x * x`. */
export const square = Remote.make("square", {
  payload: Schema.Struct({ x: Schema.Number }),
  success: Schema.Number,
  benchmark: { dataset: [{ x: 2 }, { x: 3 }, { x: 4 }], runs: 5 }
}, ({ x }) => Effect.succeed(x * x))

/** The deployment: no contexts, one remote. */
export const app = Deployment.make("square", { contexts: [], remotes: [square] })

/** Start in process, call `square` a few times, shut down. */
export const main = Effect.scoped(Effect.gen(function*() {
  const worker = yield* Worker.make(app)
  for (const x of [2, 5, 12]) {
    yield* Console.log(`square(${x}) = ${yield* worker.invoke("square", { x })}`)
  }
  yield* Console.log(`\n${Worker.formatReport(yield* worker.report)}`)
}))

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  Effect.runPromise(main).catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
}
