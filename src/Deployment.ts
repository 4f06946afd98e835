/**
 * The deployment: what a worker registers (contexts and remote functions) and the checks that can run before it starts.
 *
 * @since 0.1.0
 */
import { Context, Effect, Either, Layer, ParseResult, Schema } from "effect"
import type * as Remote from "./Remote.js"
import * as WorkerContext from "./WorkerContext.js"
import { DeploymentInvalid } from "./WorkerError.js"

const TypeId: unique symbol = Symbol.for("effect-deployments/Deployment")

/** A deployment: its contexts wired into one layer, and its remotes (plain, batched or stream) by name. */
export interface Deployment<
  in out Provides = any,
  out E = any,
  out Remotes extends Remote.Definition = Remote.Definition
> {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  /** Every context, wired by `dependsOn`, merged with `Layer.mergeAll` (independent ones enter in parallel). */
  readonly layer: Layer.Layer<Provides, E, never>
  readonly remotes: ReadonlyMap<string, Remotes>
  /** Context keys and the keys each depends on, in registration order. */
  readonly contexts: ReadonlyArray<readonly [key: string, dependsOn: ReadonlyArray<string>]>
  /** The one remote that declares a benchmark. */
  readonly benchmarkRemote: Remotes
}

type LayerOut<L> = L extends Layer.Layer<infer A, any, any> ? A : never
type LayerErr<L> = L extends Layer.Layer<any, infer E, any> ? E : never
type LayerIn<L> = L extends Layer.Layer<any, any, infer R> ? R : never

/** Fails type-checking, naming the missing tags, when a remote or a context needs a context no one registered. */
type Check<Provided, Required> = [Exclude<Required, Provided>] extends [never]
  ? unknown
  : { readonly "no registered context provides": Exclude<Required, Provided> }

/** Whether a value is a deployment made by {@link make} (how the CLI finds the one a module exports). */
export const isDeployment = (u: unknown): u is Deployment => typeof u === "object" && u !== null && TypeId in u

/** Options of {@link make}. */
export interface Options<
  Contexts extends ReadonlyArray<Layer.Layer<any, any, any>>,
  Remotes extends ReadonlyArray<Remote.Definition>
> {
  readonly contexts: Contexts
  readonly remotes: Remotes
}

const invalid = (reason: DeploymentInvalid["reason"], names: ReadonlyArray<string>, detail: string) =>
  new DeploymentInvalid({ reason, names, detail })

/**
 * Define a deployment. It is a type error when a remote (or a context's `dependsOn`) needs a context that no
 * registered context provides. Throws `DeploymentInvalid` for what can be checked now: duplicate remote or context
 * names, a dependency that is not registered or a cycle, not exactly one remote with a benchmark, benchmark inputs that
 * do not decode against the payload schema, an auto batch size on a remote the benchmark does not run.
 *
 * @example
 * ```ts
 * export const app = Deployment.make("square", { contexts: [], remotes: [square] })
 * ```
 */
export const make = <
  const Contexts extends ReadonlyArray<Layer.Layer<any, any, any>>,
  const Remotes extends ReadonlyArray<Remote.Definition>
>(
  name: string,
  options: Options<Contexts, Remotes> &
    Check<LayerOut<Contexts[number]>, Remote.ContextOf<Remotes[number]> | LayerIn<Contexts[number]>>
): Deployment<LayerOut<Contexts[number]>, LayerErr<Contexts[number]>, Remotes[number]> => {
  const remotes = new Map<string, Remotes[number]>()
  const duplicates = new Set<string>()
  for (const r of options.remotes) {
    if (remotes.has(r.name)) duplicates.add(r.name)
    remotes.set(r.name, r)
  }
  if (duplicates.size > 0) {
    throw invalid(
      "duplicate-remote",
      [...duplicates],
      `Deployment "${name}": duplicate remote names: ${[...duplicates].join(", ")}`
    )
  }

  const benchmarked = options.remotes.filter((r) => r.benchmark !== undefined)
  if (benchmarked.length !== 1) {
    const names = benchmarked.map((r) => r.name)
    throw benchmarked.length === 0
      ? invalid(
          "benchmark-missing",
          options.remotes.map((r) => r.name),
          `Deployment "${name}": exactly one remote must declare a benchmark; none of ${
            options.remotes.map((r) => r.name).join(", ") || "(no remotes)"
          } does`
        )
      : invalid(
          "benchmark-multiple",
          names,
          `Deployment "${name}": exactly one remote may declare a benchmark; ${names.join(", ")} do`
        )
  }
  const benchmarkRemote = benchmarked[0]!
  checkBenchmark(name, benchmarkRemote)
  const unmeasured = options.remotes.filter(
    (r) => r.kind === "unary" && r.batch?.maxSize === "auto" && r !== benchmarkRemote
  )
  if (unmeasured.length > 0) {
    const names = unmeasured.map((r) => r.name)
    throw invalid(
      "batch-size-unmeasured",
      names,
      `Deployment "${name}": batch maxSize "auto" is chosen by the benchmark, which runs on "${benchmarkRemote.name}"; ` +
        `${names.join(", ")} must declare the benchmark or a fixed batch size`
    )
  }

  return assemble(name, options.contexts, remotes, benchmarkRemote)
}

/** The context layers each deployment was made from, for {@link override} to rewire. */
const definitions = new WeakMap<Deployment, ReadonlyArray<Layer.Layer<any, any, any>>>()

const assemble = <Remotes extends Remote.Definition>(
  name: string,
  contexts: ReadonlyArray<Layer.Layer<any, any, any>>,
  remotes: ReadonlyMap<string, Remotes>,
  benchmarkRemote: Remotes
): Deployment<any, any, Remotes> => {
  const wired = wire(name, contexts)
  const deployment: Deployment<any, any, Remotes> = {
    [TypeId]: TypeId,
    name,
    layer: wired.layer as Layer.Layer<any, any, never>,
    remotes,
    contexts: wired.contexts,
    benchmarkRemote
  }
  definitions.set(deployment, contexts)
  return deployment
}

/**
 * The deployment with one context replaced by a test double, for testing remotes without loading the real thing.
 * The double must provide the context's service (a type error otherwise) and takes the context's place: it keeps the
 * context's key in the start-up report and for `WorkerContext.get`, and the contexts that depend on it get the double.
 * Its `enter` and `exit` are the double layer's own (`Layer.succeed` has none; `Layer.scoped` may have both).
 *
 * A plain layer must need nothing; a double that needs other contexts of the deployment is made with
 * `WorkerContext.make(Tag, { dependsOn, enter })`. The original deployment is unchanged. Throws `DeploymentInvalid`
 * (`dependency-missing`) when the deployment has no context with the tag's key.
 *
 * @example
 * ```ts
 * const fake = { next: () => 0 }
 * const testApp = Deployment.override(app, Model, Layer.succeed(Model, fake))
 * const client = yield* WorkerTest.client(testApp)
 * ```
 */
export const override: {
  <Provides, E, Remotes extends Remote.Definition, I extends Provides, E2, R2 extends Provides>(
    deployment: Deployment<Provides, E, Remotes>,
    tag: Context.Tag<I, any>,
    double: WorkerContext.WorkerContext<I, E2, R2>
  ): Deployment<Provides, E | E2, Remotes>
  <Provides, E, Remotes extends Remote.Definition, I extends Provides, S, E2>(
    deployment: Deployment<Provides, E, Remotes>,
    tag: Context.Tag<I, S>,
    double: Layer.Layer<I, E2, never>
  ): Deployment<Provides, E | E2, Remotes>
} = (deployment: Deployment, tag: Context.Tag<any, any>, double: Layer.Layer<any, any, any>): Deployment => {
  const contexts = definitions.get(deployment) ?? []
  const at = contexts.findIndex((c) => WorkerContext.isWorkerContext(c) && c.key === tag.key)
  if (at < 0) {
    throw invalid(
      "dependency-missing",
      [tag.key],
      `Deployment "${deployment.name}": cannot override "${tag.key}", which is not one of its contexts ` +
        `(${deployment.contexts.map(([key]) => key).join(", ") || "none"})`
    )
  }
  if (WorkerContext.isWorkerContext(double) && double.key !== tag.key) {
    throw invalid(
      "dependency-missing",
      [tag.key, double.key],
      `Deployment "${deployment.name}": the double for "${tag.key}" is the context "${double.key}"`
    )
  }
  const replaced = [...contexts]
  replaced[at] = WorkerContext.isWorkerContext(double) ? double : asContext(tag, double as Layer.Layer<any, any, never>)
  return assemble(deployment.name, replaced, deployment.remotes, deployment.benchmarkRemote)
}

/**
 * A plain layer as a context of the tag's key: built when the context enters (in the context's scope, so its own
 * finalizers run when the context exits), its service what the context provides.
 */
const asContext = (tag: Context.Tag<any, any>, layer: Layer.Layer<any, any, never>): Layer.Layer<any, any, never> =>
  WorkerContext.make(tag, {
    // The layer's scope is the context's: Layer.scoped inside WorkerContext.make provides it
    enter: Effect.map(Layer.build(layer), (context) => Context.unsafeGet(context, tag)) as Effect.Effect<unknown>
  })

const checkBenchmark = (name: string, remote: Remote.Definition): void => {
  const b = remote.benchmark!
  if (b.dataset === undefined && b.generator === undefined) {
    throw invalid(
      "benchmark-input-invalid",
      [remote.name],
      `Deployment "${name}": the benchmark of "${remote.name}" needs a dataset or a generator`
    )
  }
  if (b.dataset !== undefined && b.dataset.length === 0) {
    throw invalid(
      "benchmark-input-invalid",
      [remote.name],
      `Deployment "${name}": the benchmark dataset of "${remote.name}" is empty`
    )
  }
  for (const [what, n] of [
    ["runs", b.runs],
    ["concurrency", b.concurrency]
  ] as const) {
    if (n !== undefined && (!Number.isInteger(n) || n < 1)) {
      throw invalid(
        "benchmark-input-invalid",
        [remote.name],
        `Deployment "${name}": benchmark ${what} of "${remote.name}" must be a positive integer, got ${n}`
      )
    }
  }
  if (b.warmup !== undefined && (!Number.isInteger(b.warmup) || b.warmup < 0)) {
    throw invalid(
      "benchmark-input-invalid",
      [remote.name],
      `Deployment "${name}": benchmark warmup of "${remote.name}" must be a non-negative integer, got ${b.warmup}`
    )
  }
  const decode = Schema.decodeUnknownEither(remote.payload as unknown as Schema.Schema<any, any, never>, {
    errors: "all",
    onExcessProperty: "error"
  })
  const bad: Array<string> = []
  ;(b.dataset ?? []).forEach((item, i) => {
    const r = decode(item)
    if (Either.isLeft(r)) bad.push(`#${i}: ${ParseResult.TreeFormatter.formatErrorSync(r.left)}`)
  })
  if (bad.length > 0) {
    throw invalid(
      "benchmark-input-invalid",
      [remote.name],
      `Deployment "${name}": benchmark inputs of "${remote.name}" do not match its payload schema:\n${bad.join("\n")}`
    )
  }
}

/**
 * Wire contexts by their `dependsOn` into one layer. Each wired layer is built once per worker (layers are memoised
 * by reference), so a context that several others need is entered once and exited after all of them. Also used by
 * `ThreadedContext.runner` to wire the contexts each thread enters.
 *
 * @internal
 */
export const wire = (name: string, contexts: ReadonlyArray<Layer.Layer<any, any, any>>) => {
  const byKey = new Map<string, WorkerContext.WorkerContext<any, any, any>>()
  const dupes: Array<string> = []
  for (const c of contexts) {
    if (!WorkerContext.isWorkerContext(c)) continue
    if (byKey.has(c.key) && byKey.get(c.key) !== c) dupes.push(c.key)
    byKey.set(c.key, c)
  }
  if (dupes.length > 0) {
    throw invalid(
      "duplicate-context",
      dupes,
      `Deployment "${name}": two different contexts use the key(s) ${dupes.join(", ")}`
    )
  }
  const wired = new Map<string, Layer.Layer<any, any, never>>()
  const visit = (
    c: WorkerContext.WorkerContext<any, any, any>,
    path: ReadonlyArray<string>
  ): Layer.Layer<any, any, never> => {
    const done = wired.get(c.key)
    if (done !== undefined) return done
    if (path.includes(c.key)) {
      const cycle = [...path.slice(path.indexOf(c.key)), c.key]
      throw invalid(
        "dependency-cycle",
        cycle,
        `Deployment "${name}": contexts depend on each other in a cycle: ${cycle.join(" -> ")}`
      )
    }
    const deps = c.dependsOn.map((tag) => {
      const dep = byKey.get(tag.key)
      if (dep === undefined) {
        throw invalid(
          "dependency-missing",
          [c.key, tag.key],
          `Deployment "${name}": context "${c.key}" depends on "${tag.key}", which is not registered`
        )
      }
      return visit(dep, [...path, c.key])
    })
    const layer =
      deps.length === 0
        ? (c as unknown as Layer.Layer<any, any, never>)
        : Layer.provide(c, Layer.mergeAll(...(deps as [Layer.Layer<any, any, never>])))
    wired.set(c.key, layer)
    return layer
  }
  const layers = contexts.map((c) =>
    WorkerContext.isWorkerContext(c) ? visit(c, []) : (c as Layer.Layer<any, any, never>)
  )
  return {
    layer: layers.length === 0 ? Layer.empty : Layer.mergeAll(...(layers as [Layer.Layer<any, any, never>])),
    contexts: [...byKey.values()].map((c) => [c.key, c.dependsOn.map((t) => t.key)] as const)
  }
}
