import { describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { post, spawnWorker, until } from "./fixtures/child.js"

/**
 * `effect-deployments serve <fixture>` from source (or a script of its own) as a child process on a free loopback
 * port. The compiled bin is tested on the packed package, in package.test.ts.
 */
const start = (
  env: Record<string, string> = {},
  fixture = "test/fixtures/lifecycle-app.ts",
  argv = ["--import", "tsx", "src/internal/cli.ts", "serve", fixture]
) => spawnWorker(argv, env)

describe.concurrent("the CLI, in a child process", () => {
  it("serves a module, prints URL, report and ready; SIGTERM: in-flight calls finish, then the exits, exit 0", async () => {
    // Calls long enough that the signal lands while they run, even on a loaded machine.
    const worker = start({ FIXTURE_WORK_MS: "1500" })
    const [, url] = await worker.waitFor(/serving deployment "lifecycle" on (http:\/\/\S+)/)
    await worker.waitFor(/^ready: /m)
    expect(worker.output()).toMatch(/deployment lifecycle: ready/)
    expect(worker.output()).toMatch(/context Model\s+entered/)

    const calls = [1, 2, 3].map((x) => post(`${url}/remote/work`, { payload: { args: [x] } }))
    await until(async () =>
      (await (await fetch(`${url}/metrics`)).text()).includes(
        `worker_calls_in_flight{deployment="lifecycle",remote="work"} 3`
      )
    )
    worker.child.kill("SIGTERM")
    await until(async () => ((await (await fetch(`${url}/health`)).json()) as any).phase === "draining")
    const late = await post(`${url}/remote/work`, { payload: { args: [4] } })
    expect(late.status).toBe(503)
    expect(late.json).toMatchObject({ _tag: "WorkerUnavailable", reason: "draining" })

    const results = await Promise.all(calls)
    expect(results).toEqual([1, 2, 3].map((x) => ({ status: 200, json: { result: { ok: x * 2 } } })))
    expect(await worker.exited).toBe(0)
    const out = worker.output()
    const lastDone = Math.max(...[1, 2, 3].map((x) => out.indexOf(`done:${x}`)))
    expect(Math.min(...[1, 2, 3].map((x) => out.indexOf(`done:${x}`)))).toBeGreaterThan(0)
    // Model depends on nothing and Cache on nothing: both exit, after every call finished.
    expect(out.indexOf("exit:model")).toBeGreaterThan(lastDone)
    // A signal ends the worker by interruption, and the context is told so.
    expect(out).toContain("exit:model (interrupted)")
    expect(out.indexOf("exit:cache")).toBeGreaterThan(lastDone)
    expect(out).not.toContain("done:4")
  })

  it("SIGTERM during start-up rolls back what entered and exits 0", async () => {
    const worker = start({ FIXTURE_ENTER_MS: "60000" })
    const [, url] = await worker.waitFor(/on (http:\/\/\S+)/)
    await worker.waitFor(/enter:model/)
    await worker.waitFor(/entered:cache/)
    expect((await fetch(`${url}/health`)).status).toBe(200)
    expect((await fetch(`${url}/ready`)).status).toBe(503)
    worker.child.kill("SIGTERM")
    expect(await worker.exited).toBe(0)
    const out = worker.output()
    expect(out).toContain("interrupted:model")
    expect(out).toContain("exit:cache")
    expect(out).not.toContain("exit:model")
    expect(out).not.toContain("ready: ")
  })

  it("a second signal does not skip the exits", async () => {
    const worker = start({ FIXTURE_WORK_MS: "1500" })
    const [, url] = await worker.waitFor(/on (http:\/\/\S+)/)
    await worker.waitFor(/^ready: /m)
    const call = post(`${url}/remote/work`, { payload: { args: [5] } })
    await until(async () =>
      (await (await fetch(`${url}/metrics`)).text()).includes(
        `worker_calls_in_flight{deployment="lifecycle",remote="work"} 1`
      )
    )
    worker.child.kill("SIGTERM")
    await until(async () => ((await (await fetch(`${url}/health`)).json()) as any).phase === "draining")
    worker.child.kill("SIGINT")
    worker.child.kill("SIGTERM")
    expect(await call).toEqual({ status: 200, json: { result: { ok: 10 } } })
    expect(await worker.exited).toBe(0)
    expect(worker.output()).toContain("exit:model")
    expect(worker.output()).toContain("exit:cache")
  })

  it("a client that never finishes its request does not hold the process: it is answered 503 at shutdown", async () => {
    const worker = start()
    const [, url] = await worker.waitFor(/on (http:\/\/\S+)/)
    await worker.waitFor(/^ready: /m)
    const { port } = new URL(url!)
    // Headers and half a body, then silence: the server waits for the rest (Node's own limit is 5 minutes).
    const socket = Net.connect(Number(port), "127.0.0.1")
    await new Promise<void>((resolve) => socket.on("connect", resolve))
    let answer = ""
    socket.on("data", (chunk: Buffer) => (answer += chunk.toString("utf8")))
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()))
    socket.on("error", () => {})
    socket.write('POST /remote/work HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"pay')
    await until(async () => ((await (await fetch(`${url}/health`)).json()) as any).phase === "ready")
    worker.child.kill("SIGTERM")
    expect(await worker.exited).toBe(0)
    // The worker answered and closed the connection itself (the test never closes it).
    await closed
    expect(answer).toMatch(/^HTTP\/1\.1 503 /)
    expect(answer.toLowerCase()).toContain("connection: close")
    expect(answer).toContain('"_tag":"WorkerUnavailable"')
    expect(worker.output()).toContain("exit:model")
  })

  it("app.serve(): SIGTERM drains, exits the contexts and ends the process", async () => {
    const worker = start({}, "", ["--import", "tsx", "test/fixtures/app-serve.ts"])
    const [, url] = await worker.waitFor(/^ready: (\S+)/m)
    expect(await post(`${url}/remote/value`, { payload: {} })).toEqual({ status: 200, json: { result: { ok: 7 } } })
    worker.child.kill("SIGTERM")
    expect(await worker.exited).toBe(0)
    expect(worker.output()).toContain("exit:resource")
  })

  it("a failed exit makes the exit code non-zero (every context still exits)", async () => {
    const worker = start({ FIXTURE_EXIT_FAILS: "1" })
    await worker.waitFor(/^ready: /m)
    worker.child.kill("SIGTERM")
    expect(await worker.exited).toBe(1)
    expect(worker.output()).toContain("exit:model")
    expect(worker.output()).toContain("exit:cache")
    expect(worker.output()).toContain("could not free")
  })
})

/**
 * A new PID namespace, as a container has: the command runs as PID 1, which the kernel sends no signal it has no
 * handler for (the default "terminate" does not apply to PID 1). Needs util-linux's unshare and the right to create
 * namespaces (root, or user namespaces): skipped where there is neither.
 */
const canUnshare = spawnSync("unshare", ["--pid", "--fork", "--mount-proc", "true"]).status === 0

/** The command of `argv` as PID 1 in a new PID namespace; `pid1()` is its process id as seen from here. */
const asPid1 = (argv: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const worker = spawnWorker(["--pid", "--fork", "--mount-proc", ...argv], env, { command: "unshare" })
  const pid1 = (): number => {
    const unshare = worker.child.pid!
    return Number(Fs.readFileSync(`/proc/${unshare}/task/${unshare}/children`, "utf8").trim())
  }
  return { ...worker, pid1 }
}

const cli = `${process.execPath} --import tsx src/internal/cli.ts serve test/fixtures/lifecycle-app.ts`

describe.skipIf(!canUnshare).concurrent("as PID 1, as in a container", () => {
  const drainsOnSigterm = async (worker: ReturnType<typeof asPid1>) => {
    const [, url] = await worker.waitFor(/serving deployment "lifecycle" on (http:\/\/\S+)/)
    await worker.waitFor(/^ready: /m)
    const pid = worker.pid1()
    // The worker's own process is PID 1 in its namespace
    expect(Fs.readFileSync(`/proc/${pid}/status`, "utf8")).toMatch(/^NSpid:\s+\d+\s+1$/m)
    expect(Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toContain("src/internal/cli.ts")
    const call = post(`${url}/remote/work`, { payload: { args: [3] } })
    await until(async () =>
      (await (await fetch(`${url}/metrics`)).text()).includes(
        `worker_calls_in_flight{deployment="lifecycle",remote="work"} 1`
      )
    )
    process.kill(pid, "SIGTERM")
    expect(await call).toEqual({ status: 200, json: { result: { ok: 6 } } })
    expect(await worker.exited).toBe(0)
    expect(worker.output()).toContain("exit:model (interrupted)")
    expect(worker.output()).toContain("exit:cache")
  }

  it('exec form (CMD ["node", ...]): SIGTERM drains, exits every context, exit 0', async () => {
    await drainsOnSigterm(asPid1(cli.split(" "), { FIXTURE_WORK_MS: "1500" }))
  })

  it("under a shell that execs node (CMD exec node ...): the same", async () => {
    await drainsOnSigterm(asPid1(["sh", "-c", `exec ${cli}`], { FIXTURE_WORK_MS: "1500" }))
  })
})
