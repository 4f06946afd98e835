/**
 * A served worker's process at its end, in child processes: SIGTERM under keep-alive load, faults in remote code, a
 * failed start-up, bad configuration. Each asserts what clients and the engine see and the exit code.
 */
import { describe, expect, it } from "vitest"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import { post, spawnWorker, until } from "./fixtures/child.js"

/** `effect-deployments serve <fixture>` from source (or a script of its own) as a child process on a free loopback port. */
const start = (
  env: Record<string, string> = {},
  fixture = "test/fixtures/lifecycle-app.ts",
  argv = ["--import", "tsx", "src/internal/cli.ts", "serve", fixture]
) => spawnWorker(argv, env)

// Child processes start slowly on a busy machine: a minute each, though each takes a few seconds alone.
describe.concurrent("shutdown, faults and configuration, in child processes", { timeout: 60_000 }, () => {
  it("SIGTERM under keep-alive load: every request gets an HTTP answer, idle connections are closed, exit 0", async () => {
    const worker = start({ FIXTURE_WORK_MS: "200" })
    const [, url] = await worker.waitFor(/^ready: (\S+)/m)
    const { port } = new URL(url!)
    // 64 clients, each on a kept-alive connection of its own, sending calls back to back until told to go away (an
    // answer with `Connection: close`); 8 more connections open and idle.
    const outcomes: Array<string> = []
    let sigterm = false
    let afterSigterm = 0
    const client = (x: number) =>
      new Promise<void>((resolve) => {
        const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
        const next = () => {
          const body = JSON.stringify({ payload: { args: [x] } })
          const req = Http.request(
            {
              host: "127.0.0.1",
              port,
              path: "/remote/work",
              method: "POST",
              agent,
              headers: { "content-type": "application/json" }
            },
            (res) => {
              res.resume()
              res.on("end", () => {
                outcomes.push(String(res.statusCode))
                if (sigterm) afterSigterm++
                if (res.headers["connection"] === "close") {
                  agent.destroy()
                  resolve()
                } else next()
              })
            }
          )
          req.on("error", (e: NodeJS.ErrnoException) => {
            outcomes.push(`error ${e.code ?? e.message}`)
            agent.destroy()
            resolve()
          })
          req.end(body)
        }
        next()
      })
    const idle = Array.from({ length: 8 }, () => {
      const socket = Net.connect(Number(port), "127.0.0.1")
      let text = ""
      socket.on("data", (c: Buffer) => (text += c.toString("utf8")))
      const errors: Array<string> = []
      socket.on("error", (e) => errors.push(e.message))
      socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()))
      return { closed, errors, text: () => text }
    })
    const clients = Array.from({ length: 64 }, (_, i) => client(i + 1))
    // Load: every client has had answers, and calls are queued behind the eight running.
    await until(async () => outcomes.length >= 64)
    await until(async () => idle.every((c) => c.text().includes("200 OK")))
    sigterm = true
    worker.child.kill("SIGTERM")
    await Promise.all(clients)
    expect(await worker.exited).toBe(0)
    await Promise.all(idle.map((c) => c.closed))
    // No reset, no hang-up: only answers. Calls waiting at the signal were answered (200); calls sent during the
    // drain were refused (503), and each client's last answer closed its connection.
    expect(outcomes.filter((o) => o !== "200" && o !== "503")).toEqual([])
    expect(afterSigterm).toBeGreaterThanOrEqual(64)
    expect(idle.flatMap((c) => c.errors)).toEqual([])
    expect(worker.output()).toContain("exit:model (interrupted)")
  })

  for (const kind of ["exception", "rejection"] as const) {
    it(`an unhandled ${kind} in remote code: in-flight calls answered, contexts exit told the error, exit 1`, async () => {
      const worker = start({ FIXTURE_WORK_MS: "1500" })
      const [, url] = await worker.waitFor(/^ready: (\S+)/m)
      const call = post(`${url}/remote/work`, { payload: { args: [3] } })
      await until(async () =>
        (await (await fetch(`${url}/metrics`)).text()).includes(
          `worker_calls_in_flight{deployment="lifecycle",remote="work"} 1`
        )
      )
      expect(await post(`${url}/remote/fault`, { payload: { kwargs: { kind } } })).toEqual({
        status: 200,
        json: { result: { ok: 0 } }
      })
      expect(await call).toEqual({ status: 200, json: { result: { ok: 6 } } })
      expect(await worker.exited).toBe(1)
      const out = worker.output()
      const message = kind === "exception" ? "fixture: thrown from a timer" : "fixture: a promise nobody handles"
      expect(out).toContain(`exit:model (failure: Error: ${message})`)
      expect(out).toContain("exit:cache")
      expect(out.indexOf("exit:model")).toBeGreaterThan(out.indexOf("done:3"))
      expect(out).not.toContain("SIGTERM again")
    })
  }

  it("app.serve(): an unhandled rejection in a remote stops the app gracefully, exit 1", async () => {
    const worker = start({}, "", ["--import", "tsx", "test/fixtures/app-serve.ts"])
    const [, url] = await worker.waitFor(/^ready: (\S+)/m)
    expect((await post(`${url}/remote/lose`, { payload: {} })).status).toBe(200)
    expect(await worker.exited).toBe(1)
    expect(worker.output()).toContain("unhandledRejection")
    expect(worker.output()).toContain("exit:resource")
  })

  /** A stand-in engine collecting the worker's reports. */
  const engine = () =>
    new Promise<{ url: string; statuses: Array<{ error_msg: string }>; close: () => void }>((resolve) => {
      const statuses: Array<{ error_msg: string }> = []
      const server = Http.createServer((req, res) => {
        let body = ""
        req.on("data", (c: Buffer) => (body += c.toString("utf8")))
        req.on("end", () => {
          if (req.url === "/worker_status/") statuses.push(JSON.parse(body) as { error_msg: string })
          res.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resolve({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          statuses,
          close: () => server.close()
        })
      )
    })

  it("a failed start-up exits 1 after its last engine report; WORKER_ON_STARTUP_FAILURE=stay keeps it", async () => {
    const reports = await engine()
    try {
      const env = { FIXTURE_ENTER_FAILS: "1", REPORT_ADDR: reports.url, UNSECURED: "true" }
      const failing = start(env)
      expect(await failing.exited).toBe(1)
      expect(failing.output()).toContain("no weights for the model")
      expect(failing.output()).toContain("exit:cache")
      // The last status the engine got says why (sent at shutdown, before the process ended).
      expect(reports.statuses.at(-1)?.error_msg).toContain("no weights for the model")

      // Worker.serve under NodeRuntime.runMain (README's main) ends the same way.
      const main = start(env, "", ["--import", "tsx", "test/fixtures/serve-main.ts"])
      expect(await main.exited).toBe(1)
      expect(main.output()).toContain("no weights for the model")

      const staying = start({ ...env, WORKER_ON_STARTUP_FAILURE: "stay" })
      const [, url] = await staying.waitFor(/serving deployment "lifecycle" on (http:\/\/\S+)/)
      await staying.waitFor(/still answering/)
      const health = (await (await fetch(`${url}/health`)).json()) as { phase: string }
      expect(health.phase).toBe("failed")
      expect(staying.child.exitCode).toBeNull()
      staying.child.kill("SIGTERM")
      expect(await staying.exited).toBe(1)
    } finally {
      reports.close()
    }
  })

  it("bad configuration: exit 2 with the variable, its value and what is allowed (CLI and Worker.serve)", async () => {
    const cli = start({ WORKER_MAX_BODY_SIZE: "-5" })
    expect(await cli.exited).toBe(2)
    expect(cli.output()).toContain(`WORKER_MAX_BODY_SIZE: "got "-5"; expected a whole number of bytes from 1`)
    const main = start({ WORKER_AUTH: "signed", WORKER_PUBLIC_KEY: "not a key" }, "", [
      "--import",
      "tsx",
      "test/fixtures/serve-main.ts"
    ])
    expect(await main.exited).toBe(2)
    expect(main.output()).toContain(`WORKER_PUBLIC_KEY: "got "not a key" (not a public key`)
    expect(main.output()).toContain("expected an RSA public key in PEM")
  })
})
