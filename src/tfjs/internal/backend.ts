/**
 * Choosing a TensorFlow.js backend in Node: native TensorFlow when its addon is installed, else WebAssembly, else
 * plain JavaScript.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { createRequire } from "node:module"
import * as path from "node:path"
import { BackendUnavailable } from "./errors.js"
import type { PackageMissing } from "../TfjsError.js"
import { missingPackage, packageMissing } from "./peer.js"

/**
 * The TensorFlow.js namespace (`@tensorflow/tfjs-core` or a superset of it such as `@tensorflow/tfjs-node`).
 */
export type Tf = typeof import("@tensorflow/tfjs-core")

/**
 * The backends tried, best first.
 */
export const backendNames = ["tensorflow", "wasm", "cpu"] as const

/**
 * A backend name: `tensorflow` (native, from `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`), `wasm`, `cpu`.
 */
export type BackendName = (typeof backendNames)[number]

/**
 * A backend passed over, and why.
 */
export interface SkippedBackend {
  readonly backend: BackendName
  readonly reason: string
}

/**
 * The outcome of {@link selectBackend}: the active backend, the namespace to run ops with, and what was passed over.
 */
export interface SelectedBackend {
  readonly name: BackendName
  /** The namespace whose engine has `name` active: run every op and tidy through it. */
  readonly tf: Tf
  readonly skipped: ReadonlyArray<SkippedBackend>
}

/**
 * The native packages, GPU build first. Their names are held in variables so that TypeScript does not demand their
 * types: neither is a required dependency.
 */
const nativePackages: ReadonlyArray<string> = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]
const core = "@tensorflow/tfjs-core"
const wasmPackage = "@tensorflow/tfjs-backend-wasm"
const cpuPackage = "@tensorflow/tfjs-backend-cpu"

/**
 * Whether a native package is installed (resolvable, not loaded: loading the GPU build takes seconds and needs CUDA).
 * What the default thread count goes by, before any thread has chosen its backend.
 */
export const nativeInstalled = (): boolean => {
  const require = createRequire(import.meta.url)
  return nativePackages.some((specifier) => {
    try {
      require.resolve(specifier)
      return true
    } catch {
      return false
    }
  })
}

const messageOf = (u: unknown): string => {
  // A package that is not installed is the usual reason, and its name says all of it
  const missing = missingPackage(u)
  if (missing !== undefined) return `${missing}: not installed`
  const message = u instanceof Error ? u.message : typeof u === "object" && u !== null && "message" in u ? u.message : u
  // Node's resolution errors list the whole require stack: the first line says what is missing
  return String(message).split("\n")[0] ?? ""
}

/**
 * The directory holding `tfjs-backend-wasm*.wasm` (the package's dist/), resolved from this file rather than from
 * the working directory, which is wherever the process happened to start.
 */
export const wasmDirectory = (): string => {
  const require = createRequire(import.meta.url)
  return path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + path.sep
}

const activate = async (tf: Tf, name: BackendName): Promise<void> => {
  // setBackend resolves false (and only warns) when initialisation fails: turn that into a rejection
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend("${name}") failed to initialise it`)
  await tf.ready()
  if (tf.getBackend() !== name) throw new Error(`tf.getBackend() is "${tf.getBackend()}" after selecting "${name}"`)
}

const loaders: Record<BackendName, () => Promise<Tf>> = {
  tensorflow: async () => {
    const failures: Array<string> = []
    for (const specifier of nativePackages) {
      try {
        // The native package re-exports @tensorflow/tfjs and registers "tensorflow" while it is imported. Its
        // namespace is the one returned: when the lock file dedupes tfjs-core (all @tensorflow pins are equal)
        // it is the same engine as ours, and if it is not, its own copy is the one that has the backend.
        const tf = (await import(specifier)) as Tf
        await activate(tf, "tensorflow")
        return tf
      } catch (u) {
        const reason = messageOf(u)
        failures.push(reason.startsWith(`${specifier}: `) ? reason : `${specifier}: ${reason}`)
      }
    }
    throw new Error(failures.join("; "))
  },
  wasm: async () => {
    const tf = await import("@tensorflow/tfjs-core")
    const wasm = await import("@tensorflow/tfjs-backend-wasm")
    // In Node the binary is read from the file system, never fetched. Node gets no threaded build (tfjs disables it
    // there), so tfjs picks tfjs-backend-wasm-simd.wasm, or tfjs-backend-wasm.wasm without SIMD.
    try {
      wasm.setWasmPaths(wasmDirectory())
    } catch {
      // It throws only after a failed initialisation, and activate reports that failure with its cause
    }
    await activate(tf, "wasm")
    return tf
  },
  cpu: async () => {
    const tf = await import("@tensorflow/tfjs-core")
    await import("@tensorflow/tfjs-backend-cpu")
    await activate(tf, "cpu")
    return tf
  }
}

const isBackendName = (name: string): name is BackendName => (backendNames as ReadonlyArray<string>).includes(name)

/**
 * Makes the best available backend active on the TensorFlow.js engine, which is global to the process. With
 * `preferred`, only that backend is tried, and failing to load it is an error that says why.
 *
 * @example
 * const { name, tf, skipped } = yield* selectBackend()      // "tensorflow", else "wasm", else "cpu"
 * const { tf } = yield* selectBackend("wasm")              // wasm or a BackendUnavailable
 */
export const selectBackend = (
  preferred?: string
): Effect.Effect<SelectedBackend, BackendUnavailable | PackageMissing> =>
  Effect.gen(function* () {
    if (preferred !== undefined && !isBackendName(preferred)) {
      return yield* new BackendUnavailable({
        reason: "UnknownBackend",
        backend: preferred,
        skipped: [],
        message: `unknown TensorFlow.js backend "${preferred}": expected one of ${backendNames.join(", ")}`
      })
    }
    const candidates: ReadonlyArray<BackendName> = preferred === undefined ? backendNames : [preferred]
    const skipped: Array<SkippedBackend> = []
    for (const name of candidates) {
      const loaded = yield* Effect.tryPromise(() => loaders[name]()).pipe(Effect.either)
      if (loaded._tag === "Right") return { name, tf: loaded.right, skipped }
      skipped.push({ backend: name, reason: messageOf(loaded.left.cause) })
    }
    // Without tfjs-core there is no TensorFlow.js at all: say what to install rather than list three failures
    if (preferred !== "tensorflow" && skipped.some((s) => s.reason === `${core}: not installed`)) {
      return yield* packageMissing(
        core,
        "Tfjs.backend",
        `${core} and a backend: ${wasmPackage} or ${cpuPackage} (or @tensorflow/tfjs-node for native TensorFlow)`
      )
    }
    const backend = preferred ?? "any"
    const allMissing = skipped.every((s) => s.reason.split("; ").every((r) => r.endsWith(": not installed")))
    return yield* new BackendUnavailable({
      reason: "Unavailable",
      backend,
      skipped,
      message:
        preferred === undefined
          ? `no TensorFlow.js backend could be loaded: ${skipped.map((s) => `${s.backend} (${s.reason})`).join(", ")}` +
            (allMissing ? `; install one of ${[...nativePackages, wasmPackage, cpuPackage].join(", ")}` : "")
          : `TensorFlow.js backend "${preferred}" is unavailable: ${skipped[0]?.reason ?? "unknown cause"}`
    })
  })
