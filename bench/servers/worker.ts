/**
 * The worker side of bench/http-latency.ts: `Worker.serveEffect` of examples/square.ts's deployment (no benchmark, no
 * signal handling of its own: `NodeRuntime.runMain` interrupts it on SIGTERM, which drains and closes the server).
 *
 *   node --import tsx bench/servers/worker.ts   # prints `listening <port>` on 127.0.0.1 once ready
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect } from "effect"
import { app } from "../../examples/square.js"
import * as Worker from "../../src/Worker.js"
import { announce, stopWithParent } from "./lifecycle.js"

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
