/**
 * The thread side of a threaded context: enter the runner's contexts (the same lifecycle as a worker's, with its own
 * registry, mirrored to the main thread), serve calls one request at a time as the pool sends them, interrupt a call
 * when told, and exit every context when told, then end.
 *
 * @internal
 */
import {
  Cause,
  type Context,
  Deferred,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  FiberSet,
  Layer,
  ParseResult,
  Queue,
  Schema,
  Scope
} from "effect"
import * as Transferable from "@effect/platform/Transferable"
import type { TransferListItem } from "node:worker_threads"
import * as WorkerContext from "../WorkerContext.js"
import { Registry } from "./registry.js"
import type { ExitKind, FromThread, ThreadData, ToThread } from "./threadProtocol.js"

const RunnerTypeId: unique symbol = Symbol.for("effect-deployments/ThreadedContext/Runner")

/** What runs in each thread: the requests it serves, its contexts wired into one layer, and a handler per request. */
export interface RunnerDef {
  readonly [RunnerTypeId]: typeof RunnerTypeId
  readonly requests: Schema.Schema<any, any, never>
  readonly layer: Layer.Layer<any, any, never>
  readonly contexts: ReadonlyArray<readonly [key: string, dependsOn: ReadonlyArray<string>]>
  readonly handlers: Readonly<Record<string, (request: any) => Effect.Effect<any, any, any>>>
}

/** @internal */
export const makeRunner = (fields: Omit<RunnerDef, typeof RunnerTypeId>): RunnerDef => ({
  [RunnerTypeId]: RunnerTypeId,
  ...fields
})

/** Whether a module export is a runner (how the thread entry finds it). */
export const isRunner = (u: unknown): u is RunnerDef => typeof u === "object" && u !== null && RunnerTypeId in u

/** What a thread knows about itself (the `ThreadedContext.Thread` service). */
export interface ThreadInfo {
  readonly context: string
  readonly thread: number
  readonly threads: number
  readonly data: unknown
}

/**
 * The thread's own description, set once when the thread starts. Kept on `globalThis` (each thread has its own) so that
 * a thread module reading it through another copy of this library still finds it.
 */
const currentThreadKey = Symbol.for("effect-deployments/ThreadedContext/currentThread")

/** This thread's description, or undefined outside a thread of a threaded context. */
export const currentThread = (): ThreadInfo | undefined =>
  (globalThis as { [currentThreadKey]?: ThreadInfo })[currentThreadKey]

const setCurrentThread = (info: ThreadInfo): void => {
  ;(globalThis as { [currentThreadKey]?: ThreadInfo })[currentThreadKey] = info
}

/** The port the runner talks through: `parentPort` in a thread, a `MessagePort` in tests. */
export interface Port {
  readonly postMessage: (message: FromThread, transfer?: ReadonlyArray<TransferListItem>) => void
  readonly on: (event: "message", listener: (message: ToThread) => void) => unknown
  readonly close?: () => void
}

const summarize = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  const err = failure._tag === "Some" ? failure.value : Cause.squash(cause)
  if (err instanceof Error) return err.message || err.name
  return String(err)
}

const exitOf = (kind: ExitKind): Exit.Exit<unknown, unknown> => {
  switch (kind._tag) {
    case "Success":
      return Exit.void
    case "Interrupt":
      return Exit.interrupt(FiberId.none)
    case "Failure":
      return Exit.fail(new Error(kind.message))
  }
}

/** The transfer list without duplicates: the same buffer listed twice makes `postMessage` throw. */
export const uniqueTransfers = (transfers: ReadonlyArray<TransferListItem>): ReadonlyArray<TransferListItem> =>
  transfers.length < 2 ? transfers : [...new Set(transfers)]

/** Whether a buffer was already moved to another thread (Node 20 has no `ArrayBuffer.prototype.detached`). */
export const isDetached = (buffer: ArrayBuffer): boolean => {
  if (buffer.byteLength !== 0) return false
  try {
    structuredClone(buffer)
    return false
  } catch {
    return true
  }
}

/**
 * Why a transfer list cannot be sent, if it cannot: Node drops a message, without a word, whose transfer list holds a
 * buffer that is already detached, and the call waiting for it would wait forever.
 */
export const transferProblem = (transfers: ReadonlyArray<TransferListItem>): string | undefined =>
  transfers.some((t) => t instanceof ArrayBuffer && isDetached(t))
    ? "a buffer in it was already moved to another thread (pass each call its own copy: bytes.slice())"
    : undefined

/** An `Exit` that only dies with `message`: what is sent when the real one cannot be encoded. */
const encodeDefect = (message: string): unknown =>
  Schema.encodeSync(Schema.Exit({ success: Schema.Never, failure: Schema.Never, defect: Schema.Defect }))(
    Exit.die(new Error(message))
  )

/**
 * Serve `runner` on `port` until told to exit. Resolves once every context has exited and `Exited` was posted (or
 * after entering failed and `EnterFailed` was posted).
 */
export const serve = (runner: RunnerDef, port: Port, info: ThreadData): Effect.Effect<void> =>
  Effect.scoped(
    Effect.gen(function* () {
      const post = (message: FromThread, transfer?: ReadonlyArray<TransferListItem>) =>
        port.postMessage(message, transfer)
      const inbox = yield* Queue.unbounded<ToThread>()
      port.on("message", (message) => {
        Queue.unsafeOffer(inbox, message)
      })

      const registry = new Registry(runner.contexts)
      const publish = () => post({ _tag: "Records", records: registry.snapshot() })
      registry.onChange(publish)
      publish()

      const threadInfo: ThreadInfo = {
        context: info.context,
        thread: info.thread,
        threads: info.threads,
        data: info.data
      }
      const contextsScope = yield* Scope.make()
      const exitRequest = yield* Deferred.make<Extract<ToThread, { _tag: "Exit" }>>()
      // The handler fiber of each call in flight, by call id: what an Interrupt interrupts
      const handlers = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
      const calls = yield* FiberSet.make<void, never>()
      const decodeRequest = Schema.decodeUnknown(runner.requests)
      let services: Context.Context<any> | undefined

      const runCall = (id: number, encoded: unknown): Effect.Effect<void> =>
        Effect.gen(function* () {
          const decoded = yield* Effect.either(decodeRequest(encoded))
          if (Either.isLeft(decoded)) {
            const detail = ParseResult.TreeFormatter.formatErrorSync(decoded.left)
            post({
              _tag: "Result",
              id,
              exit: encodeDefect(`the thread cannot decode the request: ${detail}`),
              handlerMicros: 0
            })
            return
          }
          const request = decoded.right as { readonly _tag: string }
          const handler = runner.handlers[request._tag]
          const effect: Effect.Effect<unknown, unknown> =
            handler === undefined || services === undefined
              ? Effect.die(new Error(`no handler for request "${request._tag}" in this thread`))
              : (Effect.provide(handler(request), services) as Effect.Effect<unknown, unknown>)
          const started = performance.now()
          const fiber = yield* Effect.fork(
            effect.pipe(
              Effect.locally(WorkerContext.currentRegistry, registry),
              Effect.tapDefect((cause) =>
                Effect.logError(`Thread ${info.thread}: request "${request._tag}" died`, cause)
              )
            )
          )
          handlers.set(id, fiber)
          const exit = yield* Fiber.await(fiber)
          handlers.delete(id)
          const handlerMicros = Math.round((performance.now() - started) * 1000)
          const collector = Transferable.unsafeMakeCollector()
          const serialized = Schema.serializeExit(request as any, exit as Exit.Exit<any, any>) as Effect.Effect<
            unknown,
            ParseResult.ParseError
          >
          const result = yield* serialized.pipe(Effect.provideService(Transferable.Collector, collector), Effect.either)
          const transfers = uniqueTransfers(collector.unsafeRead() as Array<TransferListItem>)
          const problem = transferProblem(transfers)
          if (Either.isRight(result) && problem === undefined) {
            post({ _tag: "Result", id, exit: result.right, handlerMicros }, transfers)
          } else if (Either.isRight(result)) {
            post({
              _tag: "Result",
              id,
              exit: encodeDefect(`the result of "${request._tag}" cannot be sent: ${problem}`),
              handlerMicros
            })
          } else {
            const detail = ParseResult.TreeFormatter.formatErrorSync(result.left)
            yield* Effect.logError(`Thread ${info.thread}: the result of "${request._tag}" does not encode: ${detail}`)
            post({
              _tag: "Result",
              id,
              exit: encodeDefect(`the result of "${request._tag}" does not match its schema: ${detail}`),
              handlerMicros
            })
          }
        })

      const handle = (message: ToThread): Effect.Effect<void> => {
        switch (message._tag) {
          case "Call":
            return Effect.asVoid(FiberSet.run(calls, runCall(message.id, message.request)))
          case "Interrupt": {
            const fiber = handlers.get(message.id)
            return fiber === undefined ? Effect.void : Fiber.interruptFork(fiber)
          }
          case "Exit":
            return Effect.asVoid(Deferred.succeed(exitRequest, message))
        }
      }
      yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(inbox), handle)))

      setCurrentThread(threadInfo)
      const entering = yield* Effect.fork(
        Layer.buildWithScope(runner.layer, contextsScope).pipe(
          Effect.locally(WorkerContext.currentRegistry, registry),
          Effect.exit
        )
      )
      // Told to exit while entering (a sibling failed, the worker stopped): stop entering, roll back what entered
      const first = yield* Effect.raceFirst(
        Effect.map(Fiber.join(entering), (exit) => ({ _tag: "Entered", exit }) as const),
        Effect.map(Deferred.await(exitRequest), (request) => ({ _tag: "ExitRequested", request }) as const)
      )
      if (first._tag === "ExitRequested") {
        yield* Fiber.interrupt(entering)
      } else if (Exit.isFailure(first.exit)) {
        // Roll back here, so that the main thread's report shows what was rolled back before it ends the thread
        yield* Scope.close(contextsScope, first.exit)
        const failed = registry
          .snapshot()
          .filter((r) => r.state === "failed" || r.state === "timed-out")
          .sort((a, b) => (a.enterEndedAt ?? 0) - (b.enterEndedAt ?? 0))[0]
        post({
          _tag: "EnterFailed",
          context: failed?.key,
          detail: failed?.error ?? summarize(first.exit.cause)
        })
        return
      } else {
        services = first.exit.value
        registry.phase = "running"
        post({ _tag: "Entered" })
      }

      const request = yield* Deferred.await(exitRequest)
      // Calls still running are interrupted; each still answers (interrupted), then the contexts exit
      yield* Effect.forEach(handlers.values(), (fiber) => Fiber.interruptFork(fiber), { discard: true })
      yield* FiberSet.awaitEmpty(calls)
      // Rolled back when start-up failed or had not finished here; otherwise a shutdown
      registry.phase = request.rollback || services === undefined ? "starting" : "stopping"
      yield* Scope.close(contextsScope, exitOf(request.exit))
      post({ _tag: "Exited" })
    }).pipe(Effect.annotateLogs({ context: info.context, thread: info.thread }))
  )
