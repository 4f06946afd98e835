/**
 * The tfjs subpath's packages (`@tensorflow/*`, `jpeg-js`, `pngjs`) are optional peer dependencies: installing
 * effect-deployments installs none of them, and importing `effect-deployments/tfjs` loads none of them. Each is
 * imported when a context or helper first needs it, and a missing one is a {@link PackageMissing} naming it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { PackageMissing } from "../TfjsError.js"

/**
 * The package a failed import could not find, or undefined when the import failed for another reason. Node says
 * `Cannot find package 'x' imported from ...`; Vite's resolver (under vitest) says `Could not resolve "x" ...`. The
 * missing package may be a dependency of the one imported (tfjs-converter installed without tfjs-core).
 */
export const missingPackage = (u: unknown): string | undefined => {
  const message = u instanceof Error ? u.message : String(u)
  const code = (u as { code?: unknown } | null)?.code
  const found = /Cannot find (?:package|module) '([^']+)'/.exec(message) ?? /Could not resolve "([^"]+)"/.exec(message)
  if (found === null || (code !== undefined && code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND")) {
    return undefined
  }
  const specifier = found[1]!
  // A bare specifier names its package in its first segment (two for a scoped one); a path is not a package
  if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("file:")) return undefined
  return specifier
    .split("/")
    .slice(0, specifier.startsWith("@") ? 2 : 1)
    .join("/")
}

/**
 * The error for a package that `neededBy` needs and that is not installed; `install` says what to install when it is
 * more than the package itself.
 */
export const packageMissing = (pkg: string, neededBy: string, install: string = pkg): PackageMissing =>
  new PackageMissing({
    package: pkg,
    neededBy,
    message:
      `${neededBy} needs the package "${pkg}", which is not installed: install ${install}` +
      (pkg.startsWith("@tensorflow/") ? ", every @tensorflow package at the same version" : "")
  })

/**
 * Imports an optional peer. `load` is the `import()` itself (a literal specifier, so that its types are known).
 * Fails with {@link PackageMissing} when it, or a package it needs, is not installed; any other failure of the
 * import is a defect (a broken installation, not a missing one).
 */
export const importPeer = <M>(neededBy: string, load: () => Promise<M>): Effect.Effect<M, PackageMissing> =>
  Effect.tryPromise({ try: load, catch: (u) => u }).pipe(
    Effect.catchAll((u) => {
      const pkg = missingPackage(u)
      return pkg === undefined ? Effect.die(u) : Effect.fail(packageMissing(pkg, neededBy))
    })
  )

/**
 * {@link importPeer} for a module needed on a call's path: imported once, then at hand synchronously (a call that
 * runs synchronously stays so); a missing package stays missing, and every call says so.
 */
export const cachedPeer = <M>(neededBy: string, load: () => Promise<M>): Effect.Effect<M, PackageMissing> => {
  let loaded: M | undefined
  let loading: Promise<M> | undefined
  const first = Effect.tap(
    importPeer(neededBy, () => (loading ??= load())),
    (module) =>
      Effect.sync(() => {
        loaded = module
      })
  )
  return Effect.suspend(() => (loaded === undefined ? first : Effect.succeed(loaded)))
}
