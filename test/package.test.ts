/**
 * The package as users get it: packed, installed into a fresh project outside this repository, used from plain node,
 * type-checked from TypeScript, and served through its installed bin. The installs come from npm's cache when
 * `npm ci` filled it, from the registry otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { root, spawnWorker } from "./fixtures/child.js"
import { diskUsage, install, makeProject, pack, pinned, run } from "./fixtures/package.js"

const fixtures = Path.join(root, "test", "fixtures", "consumer")
const tsc = Path.join(root, "node_modules", "typescript", "bin", "tsc")

let dir: string
let project: string
const node = (args: ReadonlyArray<string>) => run(process.execPath, args, project)
const bin = ["node_modules/.bin/effect-deployments", "serve"]

beforeAll(async () => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-deployments-package-"))
  const { tarball } = await pack(dir)
  project = await makeProject(dir, tarball)
  for (const file of Fs.readdirSync(fixtures)) Fs.copyFileSync(Path.join(fixtures, file), Path.join(project, file))
}, 300_000)

afterAll(() => {
  if (dir !== undefined) Fs.rmSync(dir, { recursive: true, force: true })
})

const installed = (name: string) => Fs.existsSync(Path.join(project, "node_modules", name))

describe("the packed package, installed in a fresh project", () => {
  it("ships the build, its sources and the bin, and nothing of the repository's own", () => {
    const files = Fs.readdirSync(Path.join(project, "node_modules", "effect-deployments")).sort()
    expect(files).toEqual(["README.md", "bin", "dist", "package.json", "src"])
    const dist = Path.join(project, "node_modules", "effect-deployments", "dist")
    for (const file of [
      "index.js",
      "index.d.ts",
      "index.js.map",
      "thread.js",
      "thread.d.ts",
      "tfjs/index.js",
      "tfjs/index.d.ts"
    ]) {
      expect(Fs.existsSync(Path.join(dist, file)), file).toBe(true)
    }
  })

  it("installs the core and its peers, and no TensorFlow.js, image decoder, model package or tsx", () => {
    for (const name of ["effect", "@effect/platform", "@effect/platform-node"]) expect(installed(name), name).toBe(true)
    for (const name of ["@tensorflow", "@vladmandic/human", "jpeg-js", "pngjs", "tsx"]) {
      expect(installed(name), name).toBe(false)
    }
    // A bound that TensorFlow.js alone (over 100 MB) would break: the figure itself is bench/startup.ts's to report
    expect(diskUsage(Path.join(project, "node_modules"))).toBeLessThan(100 * 1024 * 1024)
  })

  it("imports in plain node: the root, the thread subpath, and the tfjs one without TensorFlow.js installed", async () => {
    const ran = await node(["imports.mjs"])
    expect(ran.stderr).toBe("")
    expect(ran.stdout).toContain(
      "root: App,Benchmark,ContextNotFoundError,Deployment,Remote,Session,ThreadedContext,Wire,Worker,WorkerClient,WorkerContext,WorkerError,WorkerTest"
    )
    expect(ran.stdout).toContain("thread: ThreadedContext,WorkerContext,WorkerError")
    expect(ran.stdout).toContain("tfjs: Tfjs,TfjsError,Vision")
  })

  it("runs a threaded context in plain node: the compiled thread entry, a JavaScript thread module", async () => {
    const ran = await node(["threads.mjs"])
    expect(ran.stderr).toBe("")
    expect(ran.stdout).toMatch(/^answers: 9 \(thread [12]\) 16 \(thread [12]\)$/m)
    expect(ran.stdout).toContain("contexts: Squares=exited Squares/1/Name=exited Squares/2/Name=exited")
  })

  it("without the optional peers, the tfjs subpath names the package to install", async () => {
    const ran = await node(["tfjs.mjs"])
    expect(ran.stdout).toMatch(/^backend failed: Start-up failed: context "effect-deployments\/tfjs\/Backend" failed/m)
    expect(ran.stdout).toContain(
      'Tfjs.backend needs the package "@tensorflow/tfjs-core", which is not installed: install @tensorflow/tfjs-core ' +
        "and a backend: @tensorflow/tfjs-backend-wasm or @tensorflow/tfjs-backend-cpu (or @tensorflow/tfjs-node for " +
        "native TensorFlow), every @tensorflow package at the same version"
    )
    expect(ran.stdout).toContain(
      'decode failed: PackageMissing: Vision.decodeImage (JPEG) needs the package "jpeg-js", which is not installed'
    )
  })

  it("type-checks a TypeScript consumer against the installed types", async () => {
    Fs.writeFileSync(
      Path.join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ["node"],
          typeRoots: [Path.join(root, "node_modules", "@types")]
        },
        files: ["consumer.ts"]
      })
    )
    const ran = await node([tsc, "-p", "tsconfig.json", "--listFiles"])
    expect(ran.stdout.split("\n").filter((line) => line.includes("error TS"))).toEqual([])
    expect(ran.code).toBe(0)
    const ours = ran.stdout.split("\n").filter((file) => file.includes("effect-deployments"))
    // The installed declarations, never this repository's sources
    expect(ours).toContain(Path.join(project, "node_modules/effect-deployments/dist/index.d.ts"))
    expect(ours).toContain(Path.join(project, "node_modules/effect-deployments/dist/tfjs/index.d.ts"))
    expect(ours.filter((file) => !file.startsWith(project))).toEqual([])
  })

  it("serves a .mjs deployment through the installed bin; the client calls it; SIGTERM drains and exits 0", async () => {
    const worker = spawnWorker([...bin, "app.mjs"], {}, { cwd: project })
    try {
      const [, url] = await worker.waitFor(/^ready: (http:\/\/\S+) /m)
      const response = await fetch(`${url}/remote/times`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ payload: { kwargs: { x: 5 } } })
      })
      expect(await response.json()).toEqual({ result: { ok: 15 } })
      expect((await node(["call.mjs", url!, "7"])).stdout).toBe("times: 21\n")
      worker.child.kill("SIGTERM")
      expect(await worker.exited).toBe(0)
      expect(worker.output()).toContain("exit:model")
    } finally {
      worker.child.kill("SIGKILL")
    }
  })

  it("a TypeScript deployment without tsx installed: says to install tsx or serve JavaScript, exit 1", async () => {
    const ran = await node([...bin, "app-ts.ts"])
    expect(ran.code).toBe(1)
    expect(ran.stderr).toBe(
      "effect-deployments: app-ts.ts is TypeScript, and serving TypeScript needs tsx, which is not installed.\n" +
        "Install it (npm install --save-dev tsx), or compile app-ts.ts and serve the JavaScript.\n"
    )
  })

  describe("with the optional peers installed", () => {
    beforeAll(async () => {
      await install(
        project,
        ["tsx", "@tensorflow/tfjs-core", "@tensorflow/tfjs-backend-cpu", "jpeg-js", "pngjs"].map(pinned)
      )
    }, 300_000)

    it("serves a TypeScript deployment through tsx", async () => {
      const worker = spawnWorker([...bin, "app-ts.ts"], {}, { cwd: project })
      try {
        const [, url] = await worker.waitFor(/^ready: (http:\/\/\S+) /m)
        expect((await node(["call.mjs", url!, "2"])).stdout).toBe("times: 6\n")
        worker.child.kill("SIGTERM")
        expect(await worker.exited).toBe(0)
      } finally {
        worker.child.kill("SIGKILL")
      }
    })

    it("the tfjs subpath loads TensorFlow.js and the decoders when they are there", async () => {
      const ran = await node(["tfjs.mjs"])
      expect(ran.stdout).toContain("backend: cpu")
      // The decoder ran (and refused the header-only JPEG): it was found
      expect(ran.stdout).toContain("decode failed: ImageInvalid")
    })
  })
})
