/**
 * Model load time and inference latency of the two vision models human ships, per backend.
 *
 *   npx tsx bench/tfjs-load.ts                  # wasm and cpu
 *   npx tsx bench/tfjs-load.ts wasm             # only wasm
 *
 * Writes bench/results/tfjs-load.json and prints a table. Each load is a fresh `loadGraphModel` from the files,
 * disposed afterwards; the first of each series is reported apart from the median because it pays for JIT warm-up.
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import { selectBackend } from "../src/tfjs/internal/backend.js"
import { decodeImage } from "../src/tfjs/internal/image.js"
import { loadGraphModel } from "../src/tfjs/internal/io.js"
import { detect, pose } from "../src/tfjs/internal/vision.js"
import { centernetPath, crop, movenetPath, samplesBytes, samplesPath } from "../test/fixtures/tfjs.js"
import * as Results from "./results.js"

interface Series {
  readonly backend: string
  readonly measure: string
  readonly runs: number
  readonly firstMs: number
  readonly medianMs: number
  readonly minMs: number
}

const round = (ms: number): number => Math.round(ms * 10) / 10

const series = (backend: string, measure: string, times: ReadonlyArray<number>): Series => {
  const rest = times.length > 1 ? times.slice(1) : times
  const sorted = [...rest].sort((a, b) => a - b)
  return {
    backend,
    measure,
    runs: times.length,
    firstMs: round(times[0] ?? Number.NaN),
    medianMs: round(sorted[Math.floor(sorted.length / 2)] ?? Number.NaN),
    minMs: round(sorted[0] ?? Number.NaN)
  }
}

const timed = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<readonly [number, A], E> =>
  Effect.suspend(() => {
    const start = performance.now()
    return Effect.map(effect, (a) => [performance.now() - start, a] as const)
  })

const repeat = <E>(n: number, effect: Effect.Effect<unknown, E>): Effect.Effect<Array<number>, E> =>
  Effect.forEach(Array.from({ length: n }), () => Effect.map(timed(effect), ([ms]) => ms))

const loadAndDispose = (file: string) => Effect.map(loadGraphModel(file), (model) => model.dispose())

const backendsArg = process.argv[2]?.split(",") ?? ["wasm", "cpu"]

const program = Effect.gen(function* () {
  const results: Array<Series> = []
  const [decodeMs, samples] = yield* timed(decodeImage(samplesBytes()))
  results.push(series("-", "decode samples.jpg (jpeg-js)", [decodeMs]))
  const figure = crop(samples, 0, 0, 160, 158)
  const notes: Record<string, unknown> = {}

  for (const name of backendsArg) {
    const [initMs, selected] = yield* timed(selectBackend(name))
    const { tf } = selected
    results.push(series(name, "backend init", [initMs]))
    if (name === "wasm") {
      notes.wasmSimd = yield* Effect.promise(() => tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"))
      notes.wasmThreads = yield* Effect.promise(() => tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"))
    }
    const loads = 11
    results.push(series(name, "load centernet", yield* repeat(loads, loadAndDispose(centernetPath))))
    results.push(series(name, "load movenet", yield* repeat(loads, loadAndDispose(movenetPath))))
    results.push(
      series(
        name,
        "load both, sequential",
        yield* repeat(loads, Effect.zip(loadAndDispose(centernetPath), loadAndDispose(movenetPath)))
      )
    )
    results.push(
      series(
        name,
        "load both, Promise.all",
        yield* repeat(
          loads,
          Effect.promise(() =>
            Promise.all([
              Effect.runPromise(loadGraphModel(centernetPath)),
              Effect.runPromise(loadGraphModel(movenetPath))
            ])
          ).pipe(Effect.map((models) => models.forEach((m) => m.dispose())))
        )
      )
    )

    const centernet = yield* loadGraphModel(centernetPath)
    const movenet = yield* loadGraphModel(movenetPath)
    // cpu runs centernet in seconds: a few runs say enough
    const [detects, poses] = name === "cpu" ? [3, 6] : [21, 51]
    const zeros512 = tf.zeros([1, 512, 512, 3])
    const zeros192 = tf.zeros([1, 192, 192, 3], "int32")
    const before = tf.memory().numTensors
    results.push(
      series(
        name,
        "centernet execute (512x512 zeros)",
        yield* repeat(
          detects,
          Effect.sync(() => tf.dispose(centernet.execute(zeros512, "tower_0/detections")))
        )
      )
    )
    results.push(
      series(
        name,
        "detect samples.jpg end to end",
        yield* repeat(
          detects,
          Effect.sync(() => detect(tf, centernet, samples))
        )
      )
    )
    results.push(
      series(
        name,
        "movenet execute (192x192 zeros)",
        yield* repeat(
          poses,
          Effect.sync(() => tf.dispose(movenet.execute(zeros192)))
        )
      )
    )
    results.push(
      series(
        name,
        "pose 160x158 crop end to end",
        yield* repeat(
          poses,
          Effect.sync(() => pose(tf, movenet, figure))
        )
      )
    )
    notes[`${name}LeakedTensors`] = tf.memory().numTensors - before
    notes[`${name}PersonsInSamples`] = detect(tf, centernet, samples, { minScore: 0.2, maxResults: 20 }).filter(
      (d) => d.label === "person"
    ).length
    tf.dispose([zeros512, zeros192])
    centernet.dispose()
    movenet.dispose()
  }

  const report = {
    sample: path.relative(process.cwd(), samplesPath),
    notes,
    results
  }
  const out = Results.write("tfjs-load", report)
  console.table(results)
  console.log(notes)
  console.log(`written to ${path.relative(process.cwd(), out)}`)
})

NodeRuntime.runMain(program.pipe(Effect.orDie))
