/**
 * TensorFlow.js contexts: the backend, chosen once at start-up, and models loaded from local files, warmed up while
 * the worker starts and disposed when it stops.
 *
 * @example
 * ```ts
 * import { Tfjs } from "effect-deployments/tfjs"
 *
 * class Detector extends Context.Tag("Detector")<Detector, Tfjs.GraphModel>() {}
 * const DetectorLive = Tfjs.graphModel(Detector, { path: "models/centernet.json", warmup: 1 })
 * const app = Deployment.make("vision", { contexts: [Tfjs.backend, DetectorLive], remotes: [...] })
 * ```
 *
 * @since 0.1.0
 */
import type { GraphModel as TfGraphModel } from "@tensorflow/tfjs-converter"
import type { LayersModel as TfLayersModel } from "@tensorflow/tfjs-layers"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as os from "node:os"
import * as ThreadedContext from "../ThreadedContext.js"
import * as WorkerContext from "../WorkerContext.js"
import type { ContextTimeout } from "../WorkerError.js"
import * as backendInternal from "./internal/backend.js"
import * as contexts from "./internal/contexts.js"
import type { BackendUnavailable, ModelFileError, ModelWarmupFailed, PackageMissing } from "./TfjsError.js"

/**
 * The TensorFlow.js namespace (`@tensorflow/tfjs-core`, or the superset a native package exports) whose engine has
 * the chosen backend active. Run ops and `tf.tidy` through it.
 */
export type Tf = backendInternal.Tf

/** A backend name: `tensorflow` (native, from tfjs-node-gpu or tfjs-node), `wasm` or `cpu`. */
export type BackendName = backendInternal.BackendName

/** The backends tried, best first. */
export const backendNames: ReadonlyArray<BackendName> = backendInternal.backendNames

/** A backend passed over, and why. */
export type SkippedBackend = backendInternal.SkippedBackend

/** A graph model (converted from a TensorFlow SavedModel), as `Tfjs.graphModel` loads it. */
export type GraphModel = TfGraphModel

/** A layers model (Keras-style), as `Tfjs.layersModel` loads it. */
export type LayersModel = TfLayersModel

/** What the backend context provides: the namespace to run ops with, the chosen backend, and what was passed over. */
export interface BackendService {
  readonly tf: Tf
  readonly name: BackendName
  readonly skipped: ReadonlyArray<SkippedBackend>
}

/**
 * The TensorFlow.js backend of the worker. The engine is global to the process: one backend context per deployment.
 */
export class Backend extends Context.Tag("effect-deployments/tfjs/Backend")<Backend, BackendService>() {}

/**
 * The backend context. At start-up it makes the best available backend active, in order `tensorflow`
 * (`@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node`), `wasm`, `cpu`; or, when the `TFJS_BACKEND` config
 * (environment variable) names one, that one only, failing start-up with `BackendUnavailable` saying why when it
 * cannot load. The choice, and why each better backend was skipped, is logged and noted in the start-up report.
 * TensorFlow.js is an optional peer dependency, imported here and nowhere earlier: without `@tensorflow/tfjs-core`
 * start-up fails with `PackageMissing`, naming what to install.
 *
 * @example
 * ```sh
 * TFJS_BACKEND=cpu npm start
 * ```
 */
export const backend: WorkerContext.WorkerContext<
  Backend,
  BackendUnavailable | PackageMissing | ConfigError.ConfigError | ContextTimeout
> = WorkerContext.make(Backend, {
  enter: Effect.map(contexts.enterBackend, ({ name, skipped, tf }): BackendService => ({ tf, name, skipped })),
  // Exited after every model (they depend on it): what is left then was leaked by a call or a context
  exit: ({ tf }) => WorkerContext.annotate(contexts.describeMemory(tf))
})

/**
 * The thread count of a threaded context running TensorFlow.js models (`ThreadedContext.make`'s `threads`):
 * `WORKER_THREADS` when set; else 1 when the backend will be `tensorflow` (`TFJS_BACKEND=tensorflow`, or
 * `@tensorflow/tfjs-node(-gpu)` installed and `TFJS_BACKEND` unset), since native TensorFlow spreads each op over the
 * cores (or the GPU) itself and replicas would only multiply its memory; else (wasm, cpu: one core per inference) the
 * number of cores.
 *
 * @example
 * ```ts
 * const VisionThreadsLive = ThreadedContext.make(VisionThreads, {
 *   module: new URL("./thread.js", import.meta.url),
 *   threads: Tfjs.defaultThreads
 * })
 * ```
 */
export const defaultThreads = (): number =>
  ThreadedContext.threadsFromEnv(() => {
    const demanded = process.env["TFJS_BACKEND"]?.trim()
    const native =
      demanded === undefined || demanded === "" ? backendInternal.nativeInstalled() : demanded === "tensorflow"
    return native ? 1 : os.availableParallelism()
  })

/**
 * How a model context warms its model up inside `enter` (the first inference is several times slower than the next):
 * a number of runs on zero inputs shaped like the model's inputs (unknown dimensions, such as the batch, taken as 1),
 * or a function of the model and `tf`, run inside `tf.tidy` so every tensor it makes is disposed.
 */
export type Warmup<M> = contexts.Warmup<M>

/** Options of {@link graphModel} and {@link layersModel}. */
export interface ModelOptions<M, Deps extends ReadonlyArray<WorkerContext.AnyTag>> {
  /** The model.json; its weight shards are read from the same directory. Relative to the working directory. */
  readonly path: string
  /** Warm-up inside `enter`. Default: none. */
  readonly warmup?: Warmup<M> | undefined
  /** Contexts to enter first, besides {@link Backend} (e.g. to load models one after another). */
  readonly dependsOn?: Deps | undefined
  /** Fail start-up when loading and warming up take longer. Default: none. */
  readonly enterTimeout?: Duration.DurationInput | undefined
}

/** The errors a model context can fail start-up with. */
export type ModelError = ModelFileError | ModelWarmupFailed | PackageMissing | ContextTimeout

const modelContext = <I, M, Deps extends ReadonlyArray<WorkerContext.AnyTag>>(
  kind: Parameters<typeof contexts.enterModel<M>>[0],
  tag: Context.Tag<I, M>,
  options: ModelOptions<M, Deps>
): WorkerContext.WorkerContext<I, ModelError, Backend | Context.Tag.Identifier<Deps[number]>> =>
  WorkerContext.make(tag, {
    dependsOn: [Backend, ...(options.dependsOn ?? [])] as ReadonlyArray<WorkerContext.AnyTag>,
    enter: Effect.flatMap(Backend, ({ tf }) => contexts.enterModel(kind, tf, options.path, options.warmup)),
    exit: (model) => Effect.sync(() => kind.dispose(model)),
    enterTimeout: options.enterTimeout
  }) as unknown as WorkerContext.WorkerContext<I, ModelError, Backend | Context.Tag.Identifier<Deps[number]>>

/**
 * A context holding a graph model loaded from local files (model.json and its weight shards, read with `fs`, so it
 * needs no native package), warmed up in `enter` and disposed in `exit`, after which `tf.memory().numTensors` is
 * back to its level before the context entered. Depends on {@link Backend}.
 *
 * @example
 * ```ts
 * class Movenet extends Context.Tag("Movenet")<Movenet, Tfjs.GraphModel>() {}
 * const MovenetLive = Tfjs.graphModel(Movenet, { path: "models/movenet-lightning.json", warmup: 1 })
 * ```
 */
export const graphModel = <I, const Deps extends ReadonlyArray<WorkerContext.AnyTag> = []>(
  tag: Context.Tag<I, GraphModel>,
  options: ModelOptions<GraphModel, Deps>
): WorkerContext.WorkerContext<I, ModelError, Backend | Context.Tag.Identifier<Deps[number]>> =>
  modelContext(contexts.graphKind, tag, options)

/**
 * A context holding a layers model (a Keras-style model.json with `"format": "layers-model"`) loaded from local
 * files, warmed up in `enter` and disposed in `exit`. Depends on {@link Backend}.
 *
 * @example
 * ```ts
 * class Classifier extends Context.Tag("Classifier")<Classifier, Tfjs.LayersModel>() {}
 * const ClassifierLive = Tfjs.layersModel(Classifier, { path: "models/classifier/model.json", warmup: 2 })
 * ```
 */
export const layersModel = <I, const Deps extends ReadonlyArray<WorkerContext.AnyTag> = []>(
  tag: Context.Tag<I, LayersModel>,
  options: ModelOptions<LayersModel, Deps>
): WorkerContext.WorkerContext<I, ModelError, Backend | Context.Tag.Identifier<Deps[number]>> =>
  modelContext(contexts.layersKind, tag, options)

/**
 * Runs `f` with the backend's `tf` inside `tf.tidy`: every tensor `f` makes is disposed when it returns, so `f` must
 * return plain values (read results with `dataSync()` or `arraySync()`). A throw in `f` is a defect.
 *
 * @example
 * ```ts
 * const sum = yield* Tfjs.tidy((tf) => tf.sum(tf.tensor1d([1, 2, 3])).dataSync()[0])
 * ```
 */
export const tidy = <A>(f: (tf: Tf) => A): Effect.Effect<A, never, Backend> =>
  Effect.flatMap(Backend, ({ tf }) =>
    Effect.sync(() => {
      let result: A
      tf.tidy(() => {
        result = f(tf)
      })
      return result!
    })
  )
