/**
 * The deployment: what a worker registers (contexts and remote functions) and the checks that can run before it starts.
 *
 * @since 0.1.0
 */
import { Either, Layer, ParseResult, Schema } from "effect"
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

  const layer = wire(name, options.contexts)
  return {
    [TypeId]: TypeId,
    name,
    layer: layer.layer as Layer.Layer<LayerOut<Contexts[number]>, LayerErr<Contexts[number]>, never>,
    remotes,
    contexts: layer.contexts,
    benchmarkRemote
  }
}

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
 * by reference), so a context that several others need is entered once and exited after all of them.
 */
const wire = (name: string, contexts: ReadonlyArray<Layer.Layer<any, any, any>>) => {
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
