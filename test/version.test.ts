import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as EngineReport from "../src/EngineReport.js"
import { version } from "../src/internal/version.js"

const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }

describe("version", () => {
  it("is package.json's (bump both together)", () => {
    expect(version).toBe(pkg.version)
  })

  it.effect("is what the engine is told unless the options say otherwise", () =>
    Effect.gen(function* () {
      const options = { reportAddrs: ["http://127.0.0.1:9"], containerId: 1, mtoken: "t", url: "http://w:1" }
      expect((yield* EngineReport.make(options)).status().version).toBe(pkg.version)
      expect((yield* EngineReport.make({ ...options, version: "9.9" })).status().version).toBe("9.9")
    })
  )
})
