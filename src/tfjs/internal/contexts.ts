/**
 * The enter and exit of the TensorFlow.js contexts: choosing the backend, loading a model, warming it up.
 *
 * @internal
 */
import type { GraphModel } from "@tensorflow/tfjs-converter"
import type * as TfCore from "@tensorflow/tfjs-core"
import type { LayersModel } from "@tensorflow/tfjs-layers"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as path from "node:path"
import * as WorkerContext from "../../WorkerContext.js"
import { type BackendUnavailable, type ModelFileError, ModelWarmupFailed, type PackageMissing } from "../TfjsError.js"
import { type SelectedBackend, selectBackend, type Tf } from "./backend.js"
import { loadGraphModel, loadLayersModel } from "./io.js"

/** The config key that demands a backend. */
export const backendConfig = Config.option(Config.string("TFJS_BACKEND"))

/** The start-up report line: the chosen backend, and why each better one was passed over. */
export const describeBackend = (selected: SelectedBackend, demanded: boolean): string => {
  const how = demanded ? "demanded by TFJS_BACKEND" : "best available"
  const skipped = selected.skipped.map((s) => `${s.backend} skipped: ${s.reason}`)
  return [`backend ${selected.name} (${how})`, ...skipped].join("; ")
}

/** Selects the backend TFJS_BACKEND demands, else the best one; logs and annotates the choice. */
export const enterBackend: Effect.Effect<
  SelectedBackend,
  BackendUnavailable | PackageMissing | ConfigError.ConfigError
> = Effect.gen(function* () {
  const demanded = Option.getOrUndefined(yield* backendConfig)
  const selected = yield* selectBackend(demanded)
  const description = describeBackend(selected, demanded !== undefined)
  yield* Effect.logInfo(`TensorFlow.js ${description}`)
  yield* WorkerContext.annotate(description)
  return selected
})

/** The engine's tensor count and bytes, as the backend's exit notes them ("0 tensors (0 bytes) left at exit"). */
export const describeMemory = (tf: Tf): string => {
  const { numBytes, numTensors } = tf.memory()
  return `${numTensors} tensor${numTensors === 1 ? "" : "s"} (${numBytes} bytes) left at exit`
}

/**
 * How to warm a model up: a number of runs on zero inputs shaped like the model's inputs (unknown dimensions, such
 * as the batch, taken as 1), or a function run inside `tf.tidy` (every tensor it makes is disposed).
 */
export type Warmup<M> = number | ((model: M, tf: Tf) => unknown)

/** One input of a model as the warm-up sees it: name, shape (null or -1 when unknown) and dtype. */
interface InputSpec {
  readonly name: string
  readonly shape: ReadonlyArray<number | null> | undefined
  readonly dtype: TfCore.DataType
}

/** What warm-up needs of a model kind. */
interface Kind<M> {
  readonly name: string
  readonly load: (file: string) => Effect.Effect<M, ModelFileError | PackageMissing>
  readonly inputs: (model: M) => ReadonlyArray<InputSpec>
  /** Runs the model once on these inputs and disposes what it returns. */
  readonly run: (tf: Tf, model: M, inputs: ReadonlyArray<InputSpec>, tensors: Array<TfCore.Tensor>) => Promise<void>
  readonly dispose: (model: M) => void
}

export const graphKind: Kind<GraphModel> = {
  name: "graph model",
  load: loadGraphModel,
  inputs: (model) => model.inputs.map((i) => ({ name: i.name, shape: i.shape, dtype: i.dtype })),
  run: async (tf, model, inputs, tensors) => {
    const feed: TfCore.NamedTensorMap = {}
    inputs.forEach((input, i) => (feed[input.name] = tensors[i]!))
    try {
      // tidy disposes the outputs and, if execute throws, whatever it made before throwing
      tf.tidy(() => {
        model.execute(feed)
      })
    } catch (u) {
      // Models with control flow or dynamic shapes refuse the synchronous path and say so
      if (!(u instanceof Error && u.message.includes("executeAsync"))) throw u
      tf.dispose(await model.executeAsync(feed))
    }
  },
  dispose: (model) => model.dispose()
}

export const layersKind: Kind<LayersModel> = {
  name: "layers model",
  load: loadLayersModel,
  inputs: (model) => model.inputs.map((i) => ({ name: i.name, shape: i.shape, dtype: i.dtype })),
  run: async (tf, model, _inputs, tensors) => {
    tf.tidy(() => {
      model.predict(tensors.length === 1 ? tensors[0]! : tensors)
    })
  },
  dispose: (model) => {
    model.dispose()
  }
}

const shapeText = (shape: ReadonlyArray<number | null> | undefined): string =>
  shape === undefined ? "?" : `[${shape.map((d) => (d === null || d < 0 ? "?" : d)).join(",")}]`

const warmUp = <M>(
  kind: Kind<M>,
  tf: Tf,
  model: M,
  file: string,
  warmup: Warmup<M>
): Effect.Effect<void, ModelWarmupFailed> => {
  const failed = (u: unknown) =>
    new ModelWarmupFailed({
      reason: "Failed",
      path: file,
      message: `warming up ${file} failed: ${u instanceof Error ? u.message : String(u)}`
    })
  if (typeof warmup === "function") {
    return Effect.try({
      try: () =>
        tf.tidy(() => {
          warmup(model, tf)
        }),
      catch: failed
    })
  }
  const inputs = kind.inputs(model)
  const unshaped = inputs.find((i) => i.shape === undefined)
  if (unshaped !== undefined) {
    return Effect.fail(
      new ModelWarmupFailed({
        reason: "NoInputShape",
        path: file,
        message: `${file} does not give the shape of input "${unshaped.name}": warm it up with a function`
      })
    )
  }
  return Effect.acquireUseRelease(
    Effect.sync(() =>
      inputs.map((i) =>
        tf.zeros(
          i.shape!.map((d) => (d === null || d < 0 ? 1 : d)),
          i.dtype
        )
      )
    ),
    (tensors) =>
      Effect.tryPromise({
        try: async () => {
          for (let n = 0; n < warmup; n++) await kind.run(tf, model, inputs, tensors)
        },
        catch: failed
      }),
    (tensors) => Effect.sync(() => tf.dispose(tensors))
  )
}

/** Loads a model from its files, warms it up, and notes both in the start-up report. */
export const enterModel = <M>(
  kind: Kind<M>,
  tf: Tf,
  modelPath: string,
  warmup: Warmup<M> | undefined
): Effect.Effect<M, ModelFileError | ModelWarmupFailed | PackageMissing> =>
  // One region: the load runs uninterruptibly (an interrupted load would go on in its promise and leave weights that
  // nothing disposes), and the guard that disposes the model is in place before the interruptible part begins. With
  // the guard installed after the load, an interruption (a sibling failed) that waited for the load landed in between.
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const file = path.resolve(modelPath)
      const t0 = yield* Clock.currentTimeMillis
      const model = yield* kind.load(file)
      return yield* restore(
        Effect.gen(function* () {
          const t1 = yield* Clock.currentTimeMillis
          const inputs = kind
            .inputs(model)
            .map((i) => `${shapeText(i.shape)} ${i.dtype}`)
            .join(", ")
          const notes = [`${kind.name} ${path.basename(file)}`, `input ${inputs}`, `loaded in ${t1 - t0} ms`]
          if (warmup !== undefined && warmup !== 0) {
            yield* warmUp(kind, tf, model, file, warmup)
            const runs = typeof warmup === "number" ? `${warmup} run${warmup === 1 ? "" : "s"}` : "function"
            notes.push(`warm-up (${runs}) in ${(yield* Clock.currentTimeMillis) - t1} ms`)
          }
          yield* WorkerContext.annotate(notes.join(", "))
          return model
        })
      ).pipe(
        // Failing or interrupted after the load: the context never entered, so its exit will not run and the weights
        // must be released here
        Effect.onError(() => Effect.sync(() => kind.dispose(model)))
      )
    })
  )
