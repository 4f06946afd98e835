/**
 * The main-thread side of a threaded context: start N threads in parallel (each enters its own contexts), hand each
 * call to a free thread, pass interruptions on, replace a thread that dies, and at the end exit every thread's
 * contexts before terminating it.
 *
 * @internal
 */
import * as Transferable from "@effect/platform/Transferable"
import {
  Cause,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberId,
  Option,
  ParseResult,
  Queue,
  Schema,
  Scope
} from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { type TransferListItem, Worker as NodeWorker } from "node:worker_threads"
import { ThreadFailed } from "../WorkerError.js"
import type { ContextRecord, Registry } from "./registry.js"
import type { ExitKind, FromThread, ThreadData, ToThread } from "./threadProtocol.js"
import { transferProblem, uniqueTransfers } from "./threadRunner.js"

/** How a pool is set up (resolved from `ThreadedContext.make`'s options when the context enters). */
export interface PoolConfig {
  readonly key: string
  /** File URL of the thread module. */
  readonly module: string
  readonly export: string
  readonly threads: number
  readonly data: unknown
  /** Node options of each thread, besides the parent's (minus tsx's, which the thread sets up itself). */
  readonly execArgv: ReadonlyArray<string>
  /** Where each thread's contexts are mirrored (the worker's registry), if the pool runs in a worker. */
  readonly registry: Registry | undefined
  /** First wait before trying again to replace a dead thread whose replacement failed (doubles, up to 30 s). */
  readonly replaceBackoff: Duration.Duration
  /** How long a thread may take to exit its contexts before it is terminated. */
  readonly exitTimeoutMillis: number
}

/** Counters of a pool, for stats and benchmarks. */
export interface PoolStats {
  /** The configured number of threads. */
  readonly threads: number
  /** Threads entered and serving (idle or busy). */
  readonly alive: number
  readonly busy: number
  /** Calls waiting for a free thread. */
  readonly waiting: number
  /** Calls answered by a thread (successes, failures and defects). */
  readonly calls: number
  /** Threads replaced after dying. */
  readonly replaced: number
  /** Total time the threads spent in the handlers of those calls, in milliseconds. */
  readonly handlerMillis: number
  /** Total time from sending those calls to their answer arriving, in milliseconds (handler time included). */
  readonly roundTripMillis: number
}

type ThreadState = "entering" | "idle" | "busy" | "exiting" | "dead"

interface InFlight {
  readonly id: number
  readonly tag: string
  readonly answer: Deferred.Deferred<Extract<FromThread, { _tag: "Result" }>, ThreadFailed>
}

interface Waiter {
  readonly deferred: Deferred.Deferred<ThreadHandle, ThreadFailed>
  thread: ThreadHandle | undefined
}

/** One thread, as the pool sees it. Updated synchronously from the thread's events. */
class ThreadHandle {
  state: ThreadState = "entering"
  call: InFlight | undefined = undefined
  exitSent = false
  enterFailed = false
  error: unknown = undefined
  exitCode: number | undefined = undefined
  /** Done when every context entered (or fails with why not). */
  readonly entered = Deferred.unsafeMake<void, ThreadFailed>(FiberId.none)
  /** Whether the thread said its contexts exited, or is gone; and who waits for that (see {@link awaitExited}). */
  exited = false
  private readonly onExited: Array<() => void> = []
  readonly startedAt = performance.now()
  constructor(
    readonly number: number,
    readonly worker: NodeWorker
  ) {}

  markExited(): void {
    if (this.exited) return
    this.exited = true
    for (const f of this.onExited.splice(0)) f()
  }

  /**
   * Wait until the thread's contexts exited (or it is gone), at most `millis` of real time; false when that ran out.
   * A plain callback rather than a race of fibers: this runs inside uninterruptible rollbacks, where the losing
   * branch of a race could never be interrupted.
   */
  awaitExited(millis: number): Effect.Effect<boolean> {
    return Effect.async<boolean>((resume) => {
      if (this.exited) return resume(Effect.succeed(true))
      const done = () => {
        clearTimeout(timer)
        resume(Effect.succeed(true))
      }
      const timer = setTimeout(() => {
        const i = this.onExited.indexOf(done)
        if (i >= 0) this.onExited.splice(i, 1)
        resume(Effect.succeed(false))
      }, millis)
      this.onExited.push(done)
      return Effect.sync(() => {
        clearTimeout(timer)
        const i = this.onExited.indexOf(done)
        if (i >= 0) this.onExited.splice(i, 1)
      })
    })
  }

  post(message: ToThread, transfer?: ReadonlyArray<TransferListItem>): void {
    this.worker.postMessage(message, transfer as Array<any>)
  }

  describeEnd(): string {
    const error = this.error
    if (error !== undefined)
      return `uncaught ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`
    return `the thread exited with code ${this.exitCode ?? "?"}`
  }
}

/** The thread entry module beside this one: compiled JavaScript when built, the TypeScript source otherwise. */
const threadEntry = (): { readonly url: URL; readonly typescript: boolean } => {
  const js = new URL("./threadEntry.js", import.meta.url)
  if (fs.existsSync(fileURLToPath(js))) return { url: js, typescript: false }
  return { url: new URL("./threadEntry.ts", import.meta.url), typescript: true }
}

const isTypeScript = (href: string): boolean => /\.[cm]?tsx?$/.test(new URL(href).pathname)

/** tsx's ESM API (`tsx/esm/api`), which the bootstrap registers in the thread so that TypeScript modules load. */
const tsxApi = (): string | undefined => {
  try {
    const require = createRequire(import.meta.url)
    const manifest = require.resolve("tsx/package.json")
    const exports = JSON.parse(fs.readFileSync(manifest, "utf8")).exports?.["./esm/api"]?.import
    const file = typeof exports === "string" ? exports : exports?.default
    return typeof file === "string" ? pathToFileURL(path.join(path.dirname(manifest), file)).href : undefined
  } catch {
    return undefined
  }
}

/**
 * The ESM file URL of `specifier` (a package, or a subpath its `exports` lists) as Node's ESM loader resolves it from
 * `from`: the package's `exports` entry under the conditions `node`, `import`, `default` (first match in the order the
 * package lists them), or without `exports` its `main` (as Node reads it: `module` is for bundlers). Undefined when it
 * cannot tell (the thread then simply imports it later, like any other module).
 */
export const esmUrl = (specifier: string, from: string): string | undefined => {
  try {
    const parts = specifier.split("/")
    const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!
    const subpath = specifier === name ? "." : `.${specifier.slice(name.length)}`
    const directory = createRequire(from)
      .resolve.paths(name)
      ?.map((modules) => path.join(modules, name))
      .find((candidate) => fs.existsSync(path.join(candidate, "package.json")))
    if (directory === undefined) return undefined
    const manifest = JSON.parse(fs.readFileSync(path.join(directory, "package.json"), "utf8"))
    const conditions = new Set(["node", "import", "default"])
    const pick = (target: unknown): string | undefined => {
      if (typeof target === "string") return target
      if (typeof target !== "object" || target === null || Array.isArray(target)) return undefined
      for (const [key, value] of Object.entries(target)) {
        if (!conditions.has(key)) continue
        const picked = pick(value)
        if (picked !== undefined) return picked
      }
      return undefined
    }
    const exports = manifest.exports
    if (exports === undefined) {
      if (subpath !== ".") return undefined
      const main = typeof manifest.main === "string" ? manifest.main : "index.js"
      const file = [main, `${main}.js`, path.join(main, "index.js")]
        .map((candidate) => path.join(directory, candidate))
        .find((candidate) => fs.statSync(candidate, { throwIfNoEntry: false })?.isFile() === true)
      return file === undefined ? undefined : pathToFileURL(file).href
    }
    const sugar = typeof exports === "string" || !Object.keys(exports)[0]?.startsWith(".")
    const target = sugar ? (subpath === "." ? pick(exports) : undefined) : pick(exports[subpath])
    if (target === undefined) return undefined
    const file = path.join(directory, target)
    return fs.existsSync(file) ? pathToFileURL(file).href : undefined
  } catch {
    return undefined
  }
}

/**
 * What a TypeScript thread imports natively, before the TypeScript loader is registered: `effect`, which every thread
 * needs (the thread side of this library imports it) and which is large (its index loads about 600 modules, fast-check
 * included). Under tsx every module a thread loads after the loader is registered goes through the loader's hooks, on
 * a thread of their own (Node 20), a round trip each: importing `effect` through them took 1.0 s against 0.35 s without
 * (about 0.65 s of CPU per thread, which 2 threads starting at once on 2 cores pay twice). Imported first, the module
 * is already loaded when the TypeScript modules ask for it (the loader resolves it to the same URL), so they get that
 * one instance.
 */
const nativePreloads = (): ReadonlyArray<string> =>
  ["effect"].flatMap((specifier) => esmUrl(specifier, import.meta.url) ?? [])

/** Where the bootstrap leaves the URLs it imported natively, in the thread (for tests and diagnostics). */
export const preloadedKey = Symbol.for("effect-deployments/ThreadedContext/preloaded")

/**
 * A thread started with `--import tsx` cannot load a TypeScript entry on Node 20 (the hooks are not in place for the
 * entry itself), so TypeScript threads start with this CommonJS bootstrap: import the {@link nativePreloads} (a
 * failure there is left to the real import to report), register tsx, then import the entry.
 */
const bootstrap = `
const { workerData } = require("node:worker_threads")
const { preload, tsx, entry } = workerData.bootstrap
const preloaded = (globalThis[Symbol.for("effect-deployments/ThreadedContext/preloaded")] = [])
preload
  .reduce((done, url) => done.then(() => import(url)).then(() => preloaded.push(url), () => undefined), Promise.resolve())
  .then(() => import(tsx))
  .then((api) => { api.register(); return import(entry) })
  .catch((error) => { setImmediate(() => { throw error }) })
`

/** The parent's Node options without tsx's loader (the bootstrap registers it; inherited, it breaks the thread). */
const inheritedExecArgv = (): Array<string> => {
  const out: Array<string> = []
  const argv = process.execArgv
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (/^--(import|require|loader|experimental-loader)$/.test(arg) && argv[i + 1]?.includes("tsx")) {
      i++
      continue
    }
    if (/^--(import|require|loader|experimental-loader)=.*tsx/.test(arg)) continue
    out.push(arg)
  }
  return out
}

/**
 * The parent's options a thread may take. `Worker` refuses V8 options and per-process ones (`--max-old-space-size`,
 * `--stack-size`, `--expose-gc`, ...) with `ERR_WORKER_INVALID_EXEC_ARGV`, and every thread inherits those from the
 * process anyway: learnt from the first refusal, then left out of every later thread.
 */
let refusedByWorker: ReadonlySet<string> = new Set()

const refusedFlags = (u: unknown): ReadonlyArray<string> | undefined => {
  if ((u as { code?: unknown } | null)?.code !== "ERR_WORKER_INVALID_EXEC_ARGV") return undefined
  const listed = /flags: (.*)$/s.exec((u as Error).message)?.[1]
  return listed === undefined ? undefined : listed.split(", ")
}

/** Start one thread on the entry module (through the tsx bootstrap when TypeScript is involved). */
const launch = (data: ThreadData, execArgv: ReadonlyArray<string>): NodeWorker => {
  const inherited = inheritedExecArgv()
  const construct = () => spawnWorker(data, [...inherited.filter((a) => !refusedByWorker.has(a)), ...execArgv])
  try {
    return construct()
  } catch (u) {
    // Only the inherited options are dropped: a refused option of the threaded context's own is its error to report
    const refused = refusedFlags(u)?.filter((flag) => inherited.includes(flag) && !refusedByWorker.has(flag))
    if (refused === undefined || refused.length === 0) throw u
    refusedByWorker = new Set([...refusedByWorker, ...refused])
    return construct()
  }
}

const spawnWorker = (data: ThreadData, argv: Array<string>): NodeWorker => {
  const entry = threadEntry()
  if (!entry.typescript && !isTypeScript(data.module)) {
    return new NodeWorker(entry.url, { workerData: data, execArgv: argv })
  }
  const tsx = tsxApi()
  if (tsx === undefined) {
    throw new Error(`the thread module ${data.module} is TypeScript, and tsx (which loads it) is not installed`)
  }
  return new NodeWorker(bootstrap, {
    eval: true,
    workerData: { ...data, bootstrap: { preload: nativePreloads(), tsx, entry: entry.url.href } },
    execArgv: argv
  })
}

/** Plain text of why an Exit failed. */
const summarize = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  const err = Option.isSome(failure) ? failure.value : Cause.squash(cause)
  if (err instanceof Error) return err.message || err.name
  return String(err)
}

/** How a context's `exit` is told the worker ends, in a form a thread can receive. */
export const exitKindOf = (exit: Exit.Exit<unknown, unknown>): ExitKind =>
  Exit.isSuccess(exit)
    ? { _tag: "Success" }
    : Cause.isInterruptedOnly(exit.cause)
      ? { _tag: "Interrupt" }
      : { _tag: "Failure", message: summarize(exit.cause) }

/** Wait (real time, whatever the Effect clock) for a thread to end; terminate it if it has not within `millis`. */
const awaitGone = (thread: ThreadHandle, millis: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => void thread.worker.terminate(), millis)
    thread.worker.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    if (thread.state === "dead") {
      clearTimeout(timer)
      resume(Effect.void)
    }
    return Effect.sync(() => clearTimeout(timer))
  })

/** The pool. State lives in plain fields, updated synchronously from the threads' events. */
export class ThreadPool {
  private readonly live = new Set<ThreadHandle>()
  private readonly idle: Array<ThreadHandle> = []
  private readonly waiters: Array<Waiter> = []
  private nextNumber = 1
  private nextCallId = 1
  private stopping = false
  /** Dead threads not replaced yet: while any, a call waits for the replacement rather than failing. */
  private pendingReplacements = 0
  /** Each thread's contexts as it last reported them, mirrored in thread order into the worker's registry. */
  private readonly records = new Map<number, ReadonlyArray<ContextRecord>>()
  private lastFailure: string | undefined = undefined
  private calls = 0
  private replaced = 0
  private handlerMicros = 0
  private roundTripMillis = 0

  private constructor(
    readonly config: PoolConfig,
    private readonly scope: Scope.CloseableScope,
    private readonly deaths: Queue.Queue<ThreadHandle>
  ) {}

  /** A pool that has not started any thread yet (see {@link start}). */
  static make(config: PoolConfig): Effect.Effect<ThreadPool> {
    return Effect.map(
      Effect.all([Scope.make(), Queue.unbounded<ThreadHandle>()]),
      ([scope, deaths]) => new ThreadPool(config, scope, deaths)
    )
  }

  /** Start every thread at once; succeed when all entered, else stop them all (rolled back) and fail. */
  get start(): Effect.Effect<void, ThreadFailed> {
    const threads = Array.from({ length: this.config.threads }, () => this.nextNumber++)
    return Effect.forEach(threads, (n) => this.spawn(n), { concurrency: "unbounded", discard: true }).pipe(
      Effect.zipRight(Effect.forkIn(this.supervise, this.scope)),
      Effect.asVoid,
      Effect.onError((cause) =>
        this.stop(
          {
            _tag: "Failure",
            message: Cause.isInterruptedOnly(cause)
              ? "start-up was interrupted"
              : `start-up failed: ${summarize(cause)}`
          },
          true
        )
      )
    )
  }

  private prefix(thread: number): string {
    return `${this.config.key}/${thread}/`
  }

  /** Mirror every thread's contexts into the worker's registry, thread by thread (they report in any order). */
  private mirror(): void {
    const registry = this.config.registry
    if (registry === undefined) return
    const records = [...this.records.keys()]
      .sort((a, b) => a - b)
      .flatMap((thread) => {
        const prefix = this.prefix(thread)
        return this.records
          .get(thread)!
          .map((r) => ({ ...r, key: prefix + r.key, dependsOn: r.dependsOn.map((d) => prefix + d) }))
      })
    registry.mirror(`${this.config.key}/`, this.config.key, records)
  }

  /** A thread's message. */
  private onMessage(thread: ThreadHandle, message: FromThread): void {
    switch (message._tag) {
      case "Records":
        this.records.set(thread.number, message.records)
        return this.mirror()
      case "Entered":
        thread.state = "idle"
        Deferred.unsafeDone(thread.entered, Exit.void)
        return this.release(thread)
      case "EnterFailed": {
        thread.enterFailed = true
        const detail =
          message.context === undefined ? message.detail : `context "${message.context}": ${message.detail}`
        Deferred.unsafeDone(
          thread.entered,
          Exit.fail(new ThreadFailed({ reason: "start", context: this.config.key, thread: thread.number, detail }))
        )
        return
      }
      case "Result": {
        const call = thread.call
        if (call === undefined || call.id !== message.id) return
        thread.call = undefined
        Deferred.unsafeDone(call.answer, Exit.succeed(message))
        if (thread.state === "busy") this.release(thread)
        return
      }
      case "Exited":
        thread.markExited()
        return
    }
  }

  /** A thread ended: expected (after Exit, or a failed enter), or it died and is replaced. */
  private onGone(thread: ThreadHandle, code: number): void {
    const was = thread.state
    thread.state = "dead"
    thread.exitCode = code
    this.live.delete(thread)
    const i = this.idle.indexOf(thread)
    if (i >= 0) this.idle.splice(i, 1)
    const detail = thread.describeEnd()
    Deferred.unsafeDone(
      thread.entered,
      Exit.fail(
        new ThreadFailed({
          reason: "start",
          context: this.config.key,
          thread: thread.number,
          detail: `${detail} before its contexts entered`
        })
      )
    )
    thread.markExited()
    const call = thread.call
    if (call !== undefined) {
      thread.call = undefined
      Deferred.unsafeDone(
        call.answer,
        Exit.fail(
          new ThreadFailed({
            reason: "died",
            context: this.config.key,
            thread: thread.number,
            request: call.tag,
            detail: `${detail}; the pool replaces it`
          })
        )
      )
    }
    if ((was === "idle" || was === "busy") && !this.stopping) {
      // Its contexts are gone with it: drop them from the report (the pool's own line says what happened)
      this.records.delete(thread.number)
      this.mirror()
      this.pendingReplacements++
      Queue.unsafeOffer(this.deaths, thread)
    }
  }

  /** Start thread `number` and wait until its contexts entered; stop it (rolled back) if that fails or is stopped. */
  private spawn(number: number): Effect.Effect<ThreadHandle, ThreadFailed> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.gen(this, function* () {
        const data: ThreadData = {
          module: this.config.module,
          export: this.config.export,
          context: this.config.key,
          thread: number,
          threads: this.config.threads,
          data: this.config.data
        }
        const worker = yield* Effect.try({
          try: () => launch(data, this.config.execArgv),
          catch: (u) =>
            new ThreadFailed({
              reason: "start",
              context: this.config.key,
              thread: number,
              detail: u instanceof Error ? u.message : String(u)
            })
        })
        const thread = new ThreadHandle(number, worker)
        this.live.add(thread)
        worker.on("message", (message: FromThread) => this.onMessage(thread, message))
        worker.on("error", (error) => {
          thread.error = error
        })
        worker.on("exit", (code) => this.onGone(thread, code))
        yield* restore(Deferred.await(thread.entered)).pipe(
          Effect.onError(() =>
            this.stopThread(thread, { _tag: "Failure", message: "start-up of the pool failed" }, true)
          )
        )
        return thread
      })
    )
  }

  /** Replace dead threads, one at a time, retrying with backoff while a replacement fails to enter. */
  private get supervise(): Effect.Effect<never> {
    const replaceOne = (dead: ThreadHandle) =>
      Effect.gen(this, function* () {
        yield* Effect.logWarning(
          `Threaded context "${this.config.key}": thread ${dead.number} died (${dead.describeEnd()}); replacing it`
        )
        let wait = this.config.replaceBackoff
        while (!this.stopping) {
          const number = this.nextNumber++
          const started = performance.now()
          const spawned = yield* Effect.either(this.spawn(number))
          if (Either.isRight(spawned)) {
            this.replaced++
            this.lastFailure = undefined
            this.config.registry?.note(
              this.config.key,
              `thread ${dead.number} died (${dead.describeEnd()}); thread ${number} replaced it, entered in ${Math.round(
                performance.now() - started
              )} ms`
            )
            break
          }
          this.lastFailure = spawned.left.message
          yield* Effect.logError(
            `Threaded context "${this.config.key}": replacing thread ${dead.number} failed`,
            spawned.left
          )
          if (this.live.size === 0) this.failWaiters("unavailable", `every thread died; ${spawned.left.message}`)
          yield* Effect.sleep(wait)
          wait = Duration.min(Duration.times(wait, 2), Duration.seconds(30))
        }
      }).pipe(Effect.ensuring(Effect.sync(() => this.pendingReplacements--)))
    return Effect.forever(Effect.flatMap(Queue.take(this.deaths), replaceOne))
  }

  private failWaiters(reason: "unavailable" | "stopped", detail: string): void {
    for (const waiter of this.waiters.splice(0)) {
      Deferred.unsafeDone(waiter.deferred, Exit.fail(new ThreadFailed({ reason, context: this.config.key, detail })))
    }
  }

  /** Give a free thread to the first waiting call, else put it back in the idle list. */
  private release(thread: ThreadHandle): void {
    if (thread.state === "dead" || thread.state === "exiting") return
    thread.state = "idle"
    const waiter = this.waiters.shift()
    if (waiter === undefined) {
      this.idle.push(thread)
      return
    }
    thread.state = "busy"
    waiter.thread = thread
    Deferred.unsafeDone(waiter.deferred, Exit.succeed(thread))
  }

  /** A free thread, waiting for one when all are busy. */
  private acquire(tag: string): Effect.Effect<ThreadHandle, ThreadFailed> {
    return Effect.suspend(() => {
      if (this.stopping) {
        return Effect.fail(
          new ThreadFailed({
            reason: "stopped",
            context: this.config.key,
            request: tag,
            detail: "the pool is stopping"
          })
        )
      }
      const thread = this.idle.shift()
      if (thread !== undefined) {
        thread.state = "busy"
        return Effect.succeed(thread)
      }
      // No thread, and none coming (or the last attempt to bring one back failed): fail now rather than wait
      if (this.live.size === 0 && (this.pendingReplacements === 0 || this.lastFailure !== undefined)) {
        return Effect.fail(
          new ThreadFailed({
            reason: "unavailable",
            context: this.config.key,
            request: tag,
            detail: this.lastFailure ?? "no thread is running"
          })
        )
      }
      const waiter: Waiter = { deferred: Deferred.unsafeMake(FiberId.none), thread: undefined }
      this.waiters.push(waiter)
      return Deferred.await(waiter.deferred).pipe(
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            if (waiter.thread !== undefined) return this.release(waiter.thread)
            const i = this.waiters.indexOf(waiter)
            if (i >= 0) this.waiters.splice(i, 1)
          })
        )
      )
    })
  }

  /** Run `request` in a free thread. Interrupting the caller interrupts the request in its thread. */
  execute<A, E>(
    request: Schema.TaggedRequest.All & Schema.WithResult<A, any, E, any, never>
  ): Effect.Effect<A, E | ThreadFailed> {
    const tag = (request as { readonly _tag: string })._tag
    return Effect.uninterruptibleMask((restore) =>
      Effect.gen(this, function* () {
        let thread = yield* restore(this.acquire(tag))
        // A thread handed over to this call may die before the call resumes: take another
        while (thread.state === "dead") thread = yield* restore(this.acquire(tag))
        const collector = Transferable.unsafeMakeCollector()
        const encoded = yield* (
          Schema.serialize(request as any) as Effect.Effect<unknown, ParseResult.ParseError>
        ).pipe(Effect.provideService(Transferable.Collector, collector), Effect.either)
        if (Either.isLeft(encoded)) {
          this.release(thread)
          return yield* Effect.die(
            new Error(`request "${tag}" does not encode: ${ParseResult.TreeFormatter.formatErrorSync(encoded.left)}`)
          )
        }
        const transfers = uniqueTransfers(collector.unsafeRead() as Array<TransferListItem>)
        const problem = transferProblem(transfers)
        if (problem !== undefined) {
          this.release(thread)
          return yield* Effect.die(new Error(`request "${tag}" cannot be sent: ${problem}`))
        }
        const call: InFlight = { id: this.nextCallId++, tag, answer: Deferred.unsafeMake(FiberId.none) }
        thread.call = call
        const sent = performance.now()
        try {
          thread.post({ _tag: "Call", id: call.id, request: encoded.right }, transfers)
        } catch (u) {
          thread.call = undefined
          this.release(thread)
          return yield* Effect.die(u)
        }
        const answer = yield* restore(Deferred.await(call.answer)).pipe(
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              // The thread stays busy until it answers (interrupted or not), then takes the next call
              if (thread.call === call && thread.state !== "dead") thread.post({ _tag: "Interrupt", id: call.id })
            })
          )
        )
        this.calls++
        this.handlerMicros += answer.handlerMicros
        this.roundTripMillis += performance.now() - sent
        const decodeExit = Schema.deserializeExit(request as any, answer.exit) as Effect.Effect<
          Exit.Exit<A, E>,
          ParseResult.ParseError
        >
        const exit = yield* decodeExit.pipe(
          Effect.mapError(
            (e) => new Error(`the answer to "${tag}" does not decode: ${ParseResult.TreeFormatter.formatErrorSync(e)}`)
          ),
          Effect.orDie
        )
        return yield* exit
      })
    )
  }

  /** Tell a thread to exit its contexts, wait until it did (or ended), then make sure it has ended. */
  private stopThread(thread: ThreadHandle, exit: ExitKind, rollback: boolean): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (thread.state === "dead") return Effect.void
      if (!thread.exitSent && !thread.enterFailed) {
        thread.exitSent = true
        thread.state = "exiting"
        try {
          thread.post({ _tag: "Exit", rollback, exit })
        } catch {
          // The thread is already ending: its exit event settles everything below
        }
      }
      // Bounded in real time, also for a thread still entering (the context's exit timeout covers only entered ones),
      // so that a thread whose event loop is stuck cannot hold the worker's start-up or shutdown forever
      const exited = thread.enterFailed
        ? Effect.void
        : Effect.flatMap(thread.awaitExited(this.config.exitTimeoutMillis), (inTime) =>
            inTime
              ? Effect.void
              : Effect.logWarning(
                  `Threaded context "${this.config.key}": thread ${thread.number} did not exit its contexts within ` +
                    `${this.config.exitTimeoutMillis} ms; terminating it`
                )
          )
      // Its contexts have exited: give it a moment to end by itself (its last log lines), then terminate it
      return Effect.zipRight(exited, awaitGone(thread, 1000))
    }).pipe(
      // Interrupted (an exit timeout): terminate at once
      Effect.onInterrupt(() => Effect.sync(() => void thread.worker.terminate()))
    )
  }

  /**
   * Stop the pool: no more calls, every waiting call fails, every thread exits its contexts (in parallel), then ends.
   * `rollback`: start-up failed, so the threads report their contexts as rolled back.
   */
  stop(exit: ExitKind, rollback: boolean): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.stopping = true
      this.failWaiters("stopped", "the pool is stopping")
      return Effect.forEach([...this.live], (t) => this.stopThread(t, exit, rollback), {
        concurrency: "unbounded",
        discard: true
      }).pipe(Effect.ensuring(Scope.close(this.scope, Exit.void)))
    })
  }

  /** A snapshot of the counters. */
  get stats(): PoolStats {
    let busy = 0
    let alive = 0
    for (const t of this.live) {
      if (t.state === "busy") busy++
      if (t.state === "busy" || t.state === "idle") alive++
    }
    return {
      threads: this.config.threads,
      alive,
      busy,
      waiting: this.waiters.length,
      calls: this.calls,
      replaced: this.replaced,
      handlerMillis: this.handlerMicros / 1000,
      roundTripMillis: this.roundTripMillis
    }
  }
}
