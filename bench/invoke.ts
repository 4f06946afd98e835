/**
 * The worker's own cost per call, without HTTP: `worker.invoke` (decode, admit, queue accounting, run, encode,
 * metrics) on a trivial remote, against running the same handler Effect directly. Two handlers: examples/square.ts's
 * `Effect.succeed(x * x)`, complete when it returns (its exit is the answer: no fiber), and `Effect.sync(() => x * x)`,
 * which runs in a fiber of the worker's, as most handlers do. All run in the same process, interleaved; the ratio is
 * what to watch. Writes bench/results/invoke.json.
 *
 *   npx tsx bench/invoke.ts [calls per round, default 20000] [rounds, default 5]
 */
import { Effect } from "effect"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Os from "node:os"
import { app, square } from "../examples/square.js"
import * as Worker from "../src/Worker.js"
import * as Results from "./results.js"

const N = Number(process.argv[2] ?? 20_000)
const ROUNDS = Number(process.argv[3] ?? 5)

const perCall = (effect: (i: number) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function* () {
    const t0 = performance.now()
    for (let i = 0; i < N; i++) yield* effect(i)
    return ((performance.now() - t0) * 1000) / N
  })

/** The same remote with a handler that has work to run: it gets a fiber. */
const squareSync = Remote.implement(square, { benchmark: { dataset: [{ x: 2 }], runs: 1 } }, ({ x }) =>
  Effect.sync(() => x * x)
)
const syncApp = Deployment.make("square-sync", { contexts: [], remotes: [squareSync] })

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const program = Effect.scoped(
  Effect.gen(function* () {
    const worker = yield* Worker.make(app, { benchmark: false })
    const syncWorker = yield* Worker.make(syncApp, { benchmark: false })
    const invoke: Array<number> = []
    const direct: Array<number> = []
    const invokeSync: Array<number> = []
    const directSync: Array<number> = []
    yield* perCall((x) => worker.invoke("square", { x })) // warm-up
    yield* perCall((x) => syncWorker.invoke("square", { x }))
    for (let r = 0; r < ROUNDS; r++) {
      invoke.push(yield* perCall((x) => worker.invoke("square", { x })))
      direct.push(yield* perCall((x) => square.handler({ x })))
      invokeSync.push(yield* perCall((x) => syncWorker.invoke("square", { x })))
      directSync.push(yield* perCall((x) => squareSync.handler({ x })))
    }
    const result = {
      loadavg: Os.loadavg(),
      callsPerRound: N,
      rounds: ROUNDS,
      unit: "microseconds per call",
      invokeMedian: +median(invoke).toFixed(2),
      directMedian: +median(direct).toFixed(2),
      overheadMedian: +(median(invoke) - median(direct)).toFixed(2),
      invoke: invoke.map((x) => +x.toFixed(2)),
      direct: direct.map((x) => +x.toFixed(2)),
      withFiber: {
        handler: "Effect.sync(() => x * x)",
        invokeMedian: +median(invokeSync).toFixed(2),
        directMedian: +median(directSync).toFixed(2),
        overheadMedian: +(median(invokeSync) - median(directSync)).toFixed(2)
      }
    }
    console.log(
      `Effect.succeed handler: worker.invoke ${result.invokeMedian} us/call, handler alone ${result.directMedian} ` +
        `us/call: the worker adds ${result.overheadMedian} us per call`
    )
    console.log(
      `Effect.sync handler (a fiber): worker.invoke ${result.withFiber.invokeMedian} us/call, handler alone ` +
        `${result.withFiber.directMedian} us/call: the worker adds ${result.withFiber.overheadMedian} us per call ` +
        `(load average ${Os.loadavg()[0]!.toFixed(1)})`
    )
    Results.write("invoke", result)
  })
)

Effect.runPromise(program)
