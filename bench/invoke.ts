/**
 * The worker's own cost per call, without HTTP: `worker.invoke` (decode, admit, queue accounting, fork into the
 * in-flight set, run, encode, metrics) on a trivial remote, against running the same handler Effect directly.
 * Both run in the same process, interleaved; the ratio is what to watch. Writes bench/results/invoke.json.
 *
 *   npx tsx bench/invoke.ts [calls per round, default 20000] [rounds, default 5]
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { app, square } from "../examples/square.js"
import * as Worker from "../src/Worker.js"

const N = Number(process.argv[2] ?? 20_000)
const ROUNDS = Number(process.argv[3] ?? 5)

const perCall = (effect: (i: number) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function* () {
    const t0 = performance.now()
    for (let i = 0; i < N; i++) yield* effect(i)
    return ((performance.now() - t0) * 1000) / N
  })

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const program = Effect.scoped(
  Effect.gen(function* () {
    const worker = yield* Worker.make(app, { benchmark: false })
    const invoke: Array<number> = []
    const direct: Array<number> = []
    yield* perCall((x) => worker.invoke("square", { x })) // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      invoke.push(yield* perCall((x) => worker.invoke("square", { x })))
      direct.push(yield* perCall((x) => square.handler({ x })))
    }
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: Os.cpus().length,
      loadavg: Os.loadavg(),
      callsPerRound: N,
      rounds: ROUNDS,
      unit: "microseconds per call",
      invokeMedian: +median(invoke).toFixed(2),
      directMedian: +median(direct).toFixed(2),
      overheadMedian: +(median(invoke) - median(direct)).toFixed(2),
      invoke: invoke.map((x) => +x.toFixed(2)),
      direct: direct.map((x) => +x.toFixed(2))
    }
    console.log(
      `worker.invoke ${result.invokeMedian} us/call, handler alone ${result.directMedian} us/call: ` +
        `the worker adds ${result.overheadMedian} us per call (load average ${Os.loadavg()[0]!.toFixed(1)})`
    )
    const file = Path.join(import.meta.dirname, "results", "invoke.json")
    Fs.mkdirSync(Path.dirname(file), { recursive: true })
    Fs.writeFileSync(file, JSON.stringify(result, null, 2) + "\n")
  })
)

Effect.runPromise(program)
