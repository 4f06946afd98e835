import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createRequire } from "node:module"
import { backendNames, selectBackend } from "../../src/tfjs/internal/backend.js"

const installed = (specifier: string): boolean => {
  try {
    createRequire(import.meta.url).resolve(specifier)
    return true
  } catch {
    return false
  }
}

// Without a GPU machine's install the native packages are absent (tfjs-node-gpu's install script downloads
// libtensorflow, which fails offline, and npm then drops the optional dependency)
const nativeInstalled = installed("@tensorflow/tfjs-node-gpu") || installed("@tensorflow/tfjs-node")

describe("selectBackend", () => {
  it.effect("activates the best backend and says what it skipped", () =>
    Effect.gen(function* () {
      const selected = yield* selectBackend()
      expect(backendNames).toContain(selected.name)
      expect(selected.tf.getBackend()).toBe(selected.name)
      if (!nativeInstalled) {
        expect(selected.name).toBe("wasm")
        expect(selected.skipped).toHaveLength(1)
        expect(selected.skipped[0]?.backend).toBe("tensorflow")
        expect(selected.skipped[0]?.reason).toContain("@tensorflow/tfjs-node-gpu")
        expect(selected.skipped[0]?.reason).toContain("@tensorflow/tfjs-node:")
      }
      // the namespace runs ops on that backend
      const sum = selected.tf.add(selected.tf.tensor1d([1, 2]), selected.tf.tensor1d([3, 4]))
      expect(Array.from(sum.dataSync())).toEqual([4, 6])
    })
  )

  it.effect("activates a demanded backend", () =>
    Effect.gen(function* () {
      const cpu = yield* selectBackend("cpu")
      expect(cpu).toMatchObject({ name: "cpu", skipped: [] })
      expect(cpu.tf.getBackend()).toBe("cpu")
      const wasm = yield* selectBackend("wasm")
      expect(wasm.tf.getBackend()).toBe("wasm")
    })
  )

  it.effect("fails on an unknown name, listing the known ones", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(selectBackend("webgpu"))
      expect(error).toMatchObject({ _tag: "BackendUnavailable", reason: "UnknownBackend", backend: "webgpu" })
      expect(error.message).toContain("tensorflow, wasm, cpu")
    })
  )

  it.effect.skipIf(nativeInstalled)("fails on a demanded backend that is not installed, naming it and why", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(selectBackend("tensorflow"))
      expect(error).toMatchObject({ _tag: "BackendUnavailable", reason: "Unavailable", backend: "tensorflow" })
      expect(error.message).toContain('"tensorflow" is unavailable')
      expect(error.message).toContain("@tensorflow/tfjs-node-gpu: not installed; @tensorflow/tfjs-node: not installed")
    })
  )
})
