import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { demo, formatDetections } from "../examples/vision-worker/demo.js"
import { sampleBytes } from "../examples/vision-worker/app.js"
import * as Wire from "../src/Wire.js"
import * as Worker from "../src/Worker.js"
import { root, spawnWorker } from "./fixtures/child.js"

/** The entry of `npm start`, run as npm's tsx runs it but without the launcher process, so the signal reaches it. */
const startServe = () => spawnWorker(["--import", "tsx", "examples/vision-worker/serve.ts"])

/** A `detect` result off the wire (the reference's typed list/dict encoding) as plain detections. */
const decodeDetections = (body: unknown) =>
  Effect.runPromise(Wire.decodeValue((body as { result: { ok: unknown } }).result.ok)) as Promise<
    ReadonlyArray<{ readonly label: string; readonly score: number }>
  >

const shell = (command: string): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile("sh", ["-c", command], { cwd: root, maxBuffer: 1 << 20 }, (error, stdout) =>
      error === null ? resolve(stdout) : reject(error)
    )
  )

describe("vision-worker over HTTP", () => {
  // One child for every check: loading the models and the benchmark is the slow part
  it("npm start's entry: ready line, detections over HTTP, the printed curl, SIGTERM exits every context", async () => {
    const worker = startServe()
    try {
      const [, url] = await worker.waitFor(/^ready: (http:\/\/\S+) /m)
      const [, curl] = await worker.waitFor(/^detect the people in the sample photo:\n {2}(.+)$/m)
      expect(worker.output()).toMatch(/deployment vision-worker: ready/)

      const response = await fetch(`${url}/remote/detect`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          payload: {
            kwargs: { image: { type: "bytes", contents: Buffer.from(sampleBytes()).toString("base64") }, minScore: 0.2 }
          }
        })
      })
      expect(response.status).toBe(200)
      const people = (await decodeDetections(await response.json())).filter((d) => d.label === "person")
      // 11 at minScore 0.2 when written, as in vision-worker.test.ts: a range, not exact floats
      expect(people.length).toBeGreaterThanOrEqual(6)
      expect(people.length).toBeLessThanOrEqual(16)

      // The printed command, run as printed (from the repository root, as `npm start` prints it)
      const printed = await decodeDetections(JSON.parse(await shell(curl!)))
      expect(printed.filter((d) => d.label === "person").length).toBeGreaterThanOrEqual(3)
      expect(printed.every((d) => d.score >= 0.3)).toBe(true)

      worker.child.kill("SIGTERM")
      expect(await worker.exited).toBe(0)
      const final = worker.output().slice(worker.output().indexOf("deployment vision-worker: stopped"))
      expect(final).toMatch(/^deployment vision-worker: stopped/)
      for (const key of ["effect-deployments/tfjs/Backend", "Centernet", "Movenet", "Antispoof"]) {
        expect(final).toMatch(new RegExp(`context ${key}\\s+exited\\s.*exit \\+\\d+ms`))
      }
    } finally {
      worker.child.kill("SIGKILL")
    }
  }, 60_000)

  it.live(
    "the demo detects the people in the sample photo through the typed client and reports every exit",
    () =>
      Effect.gen(function* () {
        const { detections, report, url } = yield* demo()
        expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
        const table = formatDetections(detections).split("\n")
        expect(table[0]).toMatch(/^\s+label\s+score\s+x\s+y\s+width\s+height$/)
        const people = table.filter((line) => /^\s+person\s+0\.\d{3}(\s+\d+){4}$/.test(line))
        expect(people.length).toBeGreaterThanOrEqual(3)
        expect(people.length).toBe(detections.filter((d) => d.label === "person").length)

        expect(report.phase).toBe("stopped")
        expect(report.benchmark?.remote).toBe("detect")
        const timeline = Worker.formatReport(report)
        expect(report.contexts.map((c) => [c.key, c.state])).toEqual([
          ["effect-deployments/tfjs/Backend", "exited"],
          ["Centernet", "exited"],
          ["Movenet", "exited"],
          ["Antispoof", "exited"]
        ])
        expect(timeline).toMatch(/context Centernet\s+exited\s+enter \+\d+ms -> \+\d+ms .* exit \+\d+ms/)
        expect(timeline).toMatch(/^ {2}ready after \d+ ms$/m)
      }),
    { timeout: 60_000 }
  )
})
