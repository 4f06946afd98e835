import * as Path from "node:path"
import { defineConfig } from "vitest/config"

const src = (file: string) => Path.resolve(import.meta.dirname, "src", file)

export default defineConfig({
  resolve: {
    // Tests and examples import the package by name and run its sources, as tsconfig.json's `paths` say for tsc and
    // tsx; the package's `exports` point at the build in dist/, which only `npm pack` makes.
    alias: [
      { find: /^effect-deployments$/, replacement: src("index.ts") },
      { find: /^effect-deployments\/tfjs$/, replacement: src("tfjs/index.ts") },
      { find: /^effect-deployments\/thread$/, replacement: src("thread.ts") }
    ]
  },
  test: {
    include: ["test/**/*.test.ts", "examples/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
