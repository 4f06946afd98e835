import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { PNG } from "pngjs"
import { demo, formatDetections } from "../examples/vision-worker/demo.js"
import { scaleDetections } from "../examples/vision-worker/draw.js"
import { sampleBytes } from "../examples/vision-worker/app.js"
import * as Wire from "../src/Wire.js"
import * as Worker from "../src/Worker.js"
import { root, spawnWorker } from "./fixtures/child.js"

/** The entry of `npm start`, run as npm's tsx runs it but without the launcher process, so the signal reaches it. */
const startServe = () => spawnWorker(["--import", "tsx", "examples/vision-worker/serve.ts"], { WORKER_THREADS: "2" })

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
      // The pool exited after every context of both threads did
      expect(final).toMatch(/context VisionThreads\s+exited\s.*exit \+\d+ms.*\[2 threads running/)
      for (const thread of [1, 2]) {
        for (const key of ["effect-deployments/tfjs/Backend", "Centernet", "Movenet", "Antispoof"]) {
          expect(final).toMatch(new RegExp(`context VisionThreads/${thread}/${key}\\s+exited\\s.*exit \\+\\d+ms`))
        }
      }
    } finally {
      worker.child.kill("SIGKILL")
    }
  }, 60_000)

  it.live(
    "the demo detects the people in the sample photo through the typed client and reports every exit",
    () =>
      Effect.gen(function* () {
        const output = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vision-demo-")), "demo.png")
        const { detections, poses, report, url } = yield* demo({ output })
        expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
        const table = formatDetections(detections).split("\n")
        expect(table[0]).toMatch(/^\s+label\s+score\s+x\s+y\s+width\s+height$/)
        const people = table.filter((line) => /^\s+person\s+0\.\d{3}(\s+\d+){4}$/.test(line))
        expect(people.length).toBeGreaterThanOrEqual(3)
        expect(people.length).toBe(detections.filter((d) => d.label === "person").length)

        expect(report.phase).toBe("stopped")
        expect(report.benchmark?.remote).toBe("detect")
        const timeline = Worker.formatReport(report)
        expect(report.contexts[0]).toMatchObject({ key: "VisionThreads", state: "exited" })
        expect(report.contexts.slice(1).map((c) => c.key.replace(/^VisionThreads\/\d+\//, ""))).toEqual(
          Array.from({ length: (report.contexts.length - 1) / 4 }, () => [
            "effect-deployments/tfjs/Backend",
            "Centernet",
            "Movenet",
            "Antispoof"
          ]).flat()
        )
        expect(report.contexts.every((c) => c.state === "exited")).toBe(true)
        expect(timeline).toMatch(
          /context VisionThreads\/1\/Centernet\s+exited\s+enter \+\d+ms -> \+\d+ms .* exit \+\d+ms/
        )
        expect(timeline).toMatch(/^ {2}ready after \d+ ms$/m)

        // The picture: the photo, with each detection's box drawn in its class colour (person: orange)
        const png = PNG.sync.read(fs.readFileSync(output))
        expect([png.width, png.height]).toEqual([800, Math.round(1158 * (800 / 1280))])
        const [person] = scaleDetections(
          detections.filter((d) => d.label === "person"),
          800 / 1280
        )
        if (person === undefined) throw new Error("no person detected")
        const at = (x: number, y: number) => {
          const i = (Math.round(y) * png.width + Math.round(x)) * 4
          return [png.data[i], png.data[i + 1], png.data[i + 2]]
        }
        // Along its left edge (a skeleton drawn later may cross it here and there)
        const edge = Array.from({ length: 20 }, (_, i) =>
          at(person.box.x + 1, person.box.y + ((i + 0.5) * person.box.height) / 20)
        )
        expect(edge.filter(([r, g, b]) => r === 230 && g === 90 && b === 20).length).toBeGreaterThanOrEqual(15)
        expect(poses.length).toBeGreaterThan(0)
        expect(poses.every((keypoints) => keypoints.length === 17)).toBe(true)
      }),
    { timeout: 60_000 }
  )
})
