// The worker side of bench/http-latency.ts: `Worker.serveEffect` of the `square` deployment (examples/square.ts,
// written here in JavaScript) from the compiled package in dist/ (`npm run build`), as users run it: no TypeScript
// loader in the process. No benchmark, no signal handling of its own: `NodeRuntime.runMain` interrupts it on SIGTERM.
//
//   npm run build && node bench/servers/worker.mjs   # prints `listening <port>` on 127.0.0.1 once ready
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Schema } from "effect"
import { Deployment, Remote, Worker } from "../../dist/index.js"
import { announce, stopWithParent } from "./lifecycle.mjs"

const square = Remote.make(
  "square",
  {
    payload: Schema.Struct({ x: Schema.Number }),
    success: Schema.Number,
    benchmark: { dataset: [{ x: 2 }, { x: 3 }], runs: 3 }
  },
  // `--fiber`: a handler with work to run, as most are (a fiber runs it); `Effect.succeed` is complete already and is
  // answered without one.
  process.argv.includes("--fiber") ? ({ x }) => Effect.sync(() => x * x) : ({ x }) => Effect.succeed(x * x)
)
const app = Deployment.make("square", { contexts: [], remotes: [square] })

stopWithParent(() => process.kill(process.pid, "SIGTERM"))

NodeRuntime.runMain(
  Effect.scoped(
    Effect.gen(function* () {
      const served = yield* Worker.serveEffect(app, {
        port: 0,
        host: "127.0.0.1",
        handleSignals: false,
        benchmark: false
      })
      yield* served.worker.awaitReady
      announce(served.address.port)
      return yield* Effect.never
    })
  )
)
