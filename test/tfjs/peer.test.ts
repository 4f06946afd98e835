import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { cachedPeer, importPeer, missingPackage } from "../../src/tfjs/internal/peer.js"

/** The specifier in a variable, so that the bundler of the test runner does not try to resolve it up front. */
const importByName = (name: string) => () => import(name)

describe("missingPackage", () => {
  it("reads the package from Node's and Vite's resolution errors, scoped or not, with or without a subpath", () => {
    const node = (specifier: string) =>
      Object.assign(new Error(`Cannot find package '${specifier}' imported from /app/dist/x.js`), {
        code: "ERR_MODULE_NOT_FOUND"
      })
    expect(missingPackage(node("@tensorflow/tfjs-core"))).toBe("@tensorflow/tfjs-core")
    expect(missingPackage(node("@tensorflow/tfjs-core/dist/io"))).toBe("@tensorflow/tfjs-core")
    expect(missingPackage(node("jpeg-js"))).toBe("jpeg-js")
    expect(missingPackage(node("pngjs/lib/png"))).toBe("pngjs")
    expect(missingPackage(new Error('Could not resolve "pngjs" imported by "x". Is it installed?'))).toBe("pngjs")
  })

  it("is undefined for a missing file, another error code, or any other failure", () => {
    expect(
      missingPackage(Object.assign(new Error("Cannot find module '/app/x.js'"), { code: "ERR_MODULE_NOT_FOUND" }))
    ).toBeUndefined()
    expect(
      missingPackage(Object.assign(new Error("Cannot find package 'a' imported from b"), { code: "EACCES" }))
    ).toBeUndefined()
    expect(missingPackage(new SyntaxError("Unexpected token"))).toBeUndefined()
  })
})

describe("importPeer", () => {
  it.effect("fails with PackageMissing naming the package and what needs it", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(importPeer("Vision.decodeImage (JPEG)", importByName("no-such-package-4f2a")))
      expect(error).toMatchObject({
        _tag: "PackageMissing",
        package: "no-such-package-4f2a",
        neededBy: "Vision.decodeImage (JPEG)"
      })
      expect(error.message).toBe(
        'Vision.decodeImage (JPEG) needs the package "no-such-package-4f2a", which is not installed: ' +
          "install no-such-package-4f2a"
      )
    })
  )

  it.effect("returns the module when it is installed", () =>
    Effect.gen(function* () {
      const jpeg = yield* importPeer("test", () => import("jpeg-js"))
      expect(typeof jpeg.decode).toBe("function")
    })
  )

  it.effect("is a defect when the module is there but fails to load", () =>
    Effect.gen(function* () {
      const broken = new TypeError("x is not a function")
      const exit = yield* Effect.exit(importPeer("test", () => Promise.reject(broken)))
      expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBe(broken)
    })
  )
})

describe("cachedPeer", () => {
  it("imports once, then gives the module synchronously; a missing package fails every time", async () => {
    let imports = 0
    const jpeg = cachedPeer("test", () => (imports++, import("jpeg-js")))
    expect(() => Effect.runSync(jpeg)).toThrow() // the first import is asynchronous
    await Effect.runPromise(jpeg)
    expect(typeof Effect.runSync(jpeg).decode).toBe("function")
    expect(imports).toBe(1)
    const missing = cachedPeer("test", importByName("no-such-package-4f2a"))
    for (let i = 0; i < 2; i++) {
      const error = await Effect.runPromise(Effect.flip(missing))
      expect(error).toMatchObject({ _tag: "PackageMissing", package: "no-such-package-4f2a" })
    }
  })
})
