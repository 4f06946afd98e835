import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberId,
  FiberSet,
  Layer,
  Option,
  ParseResult,
  Schema,
  Scope,
  SubscriptionRef
} from "effect"
import * as Benchmark from "../Benchmark.js"
import type * as Deployment from "../Deployment.js"
import type * as Remote from "../Remote.js"
import * as WorkerContext from "../WorkerContext.js"
import {
  BenchmarkFailed,
  CallFailed,
  CallTimeout,
  ContextFailure,
  FieldIssue,
  PayloadInvalid,
  RemoteFailure,
  RemoteNotFound,
  ShutdownFailed,
  StartupFailed,
  WorkerUnavailable
} from "../WorkerError.js"
import * as Metrics from "./metrics.js"
import { activeRegistries, latest, Registry } from "./registry.js"
import type { ContextRecord } from "./registry.js"

export type Phase = "starting" | "benchmarking" | "ready" | "draining" | "stopping" | "stopped" | "failed"

export interface Status {
  readonly phase: Phase
  /** Clock time the phase began (epoch ms). */
  readonly since: number
  readonly error?: string | undefined
}

export interface Report {
  readonly deployment: string
  readonly phase: Phase
  readonly startedAt: number
  readonly readyAt: number | undefined
  readonly contexts: ReadonlyArray<ContextRecord>
  readonly benchmark: Benchmark.Result | undefined
  readonly error: string | undefined
}

export interface RemoteStats {
  readonly name: string
  readonly running: number
  readonly queued: number
  readonly concurrency: number
  readonly maxQueue: number
}

export interface Options {
  readonly callTimeout?: Duration.DurationInput | undefined
  readonly drainTimeout?: Duration.DurationInput | undefined
  readonly benchmark?: boolean | undefined
  readonly maxQueueTime?: Duration.DurationInput | undefined
}

/**
 * Hooks into one call's path, for a transport that accounts calls elsewhere (the engine reports). Called
 * synchronously on the call path: keep them cheap and never throw.
 */
export interface CallObserver {
  /** The call was admitted (decoded, not refused): `workload` units are now pending; it may still wait for a slot. */
  readonly admitted: (workload: number) => void
  /** The call got its concurrency slot: the handler runs from now. */
  readonly started: () => void
  /** The call was refused because the queue is full or the estimated wait too long (`queue-full`, a 429). */
  readonly rejected: (workload: number) => void
}

export type InvokeError = RemoteNotFound | PayloadInvalid | WorkerUnavailable | CallTimeout | CallFailed | RemoteFailure

export interface Worker<Provides, Remotes extends Remote.Any> {
  readonly deployment: Deployment.Deployment<Provides, any, Remotes>
  readonly status: SubscriptionRef.SubscriptionRef<Status>
  readonly report: Effect.Effect<Report>
  readonly awaitReady: Effect.Effect<void, StartupFailed>
  readonly invoke: (name: string, payload: unknown, observer?: CallObserver) => Effect.Effect<unknown, InvokeError>
  readonly call: <Rm extends Remotes>(
    remote: Rm,
    payload: Schema.Schema.Type<Rm["payload"]>
  ) => Effect.Effect<
    Schema.Schema.Type<Rm["success"]>,
    Schema.Schema.Type<Rm["error"]> | WorkerUnavailable | CallTimeout
  >
  readonly stats: Effect.Effect<ReadonlyArray<RemoteStats>>
  readonly metrics: Effect.Effect<Metrics.Snapshot>
  readonly shutdown: Effect.Effect<void, ShutdownFailed>
  readonly shutdownWith: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void, ShutdownFailed>
  readonly registry: Registry
}

interface Slot {
  readonly remote: Remote.Any
  readonly semaphore: Effect.Semaphore
  readonly maxQueueTime: Duration.Duration | undefined
  // Built once per remote: making a Schema decoder or encoder per call shows up in a trivial call's profile.
  readonly decodePayload: (u: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly encodeSuccess: (u: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly encodeError: (u: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  running: number
  queued: number
}

const DEFAULT_DRAIN = Duration.seconds(30)

let callIds = 0
const nextId = (): string => `${Date.now().toString(36)}-${(++callIds).toString(36)}`

const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<FieldIssue> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map(
    (i) => new FieldIssue({ path: [...i.path] as Array<string | number>, message: i.message })
  )

const workloadOf = (remote: Remote.Any, payload: unknown): number => {
  const f = remote.benchmark?.workload
  if (f === undefined) return Benchmark.DEFAULT_WORKLOAD
  try {
    const w = f(payload)
    return Number.isFinite(w) && w >= 0 ? w : Benchmark.DEFAULT_WORKLOAD
  } catch {
    // A workload function that throws must not fail the call: it only feeds an estimate.
    return Benchmark.DEFAULT_WORKLOAD
  }
}

const outcomeOf = (exit: Exit.Exit<unknown, InvokeError>): Metrics.Outcome => {
  if (Exit.isSuccess(exit)) return "ok"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "defect"
  switch (failure.value._tag) {
    case "RemoteFailure":
      return "error"
    case "PayloadInvalid":
      return "invalid"
    case "CallTimeout":
      return "timeout"
    case "WorkerUnavailable":
    case "RemoteNotFound":
      return "rejected"
    case "CallFailed":
      return "defect"
  }
}

/** @internal */
export const start = <Provides, E, Remotes extends Remote.Any>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: Options = {}
): Effect.Effect<Worker<Provides, Remotes>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const outer = yield* Effect.scope
    const registry = new Registry(deployment.contexts)
    activeRegistries.set(deployment, registry)
    latest.registry = registry
    const startedAt = yield* Clock.currentTimeMillis
    const status = yield* SubscriptionRef.make<Status>({ phase: "starting", since: startedAt })
    const contextsScope = yield* Scope.make()
    const inflight = yield* FiberSet.make<unknown, unknown>()
    const ready = yield* Deferred.make<void, StartupFailed>()
    const drainTimeout = Duration.decode(options.drainTimeout ?? DEFAULT_DRAIN)
    const callTimeout = options.callTimeout === undefined ? undefined : Duration.decode(options.callTimeout)
    const recorder = new Metrics.Recorder(deployment.remotes.keys())

    let phase: Phase = "starting"
    let readyAt: number | undefined
    let lastError: string | undefined
    let benchmark: Benchmark.Result | undefined
    // Forks a call into `inflight` with the entered contexts and the registry already in its runtime: set once at
    // start-up rather than per call (providing and joining per call cost a third of a trivial call's time).
    let runCall: ((effect: Effect.Effect<unknown, unknown>) => Fiber.RuntimeFiber<unknown, unknown>) | undefined
    let active = 0
    // Workload units of every admitted call not yet finished: with the score, how long a new call would wait.
    let pendingWorkload = 0
    let drained: Deferred.Deferred<void> | undefined

    const setPhase = (next: Phase, error?: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        phase = next
        if (error !== undefined) lastError = error
        return SubscriptionRef.set(status, { phase: next, since: now, error })
      })

    const slots = new Map<string, Slot>()
    for (const remote of deployment.remotes.values()) {
      const maxQueueTime = remote.maxQueueTime ?? options.maxQueueTime
      slots.set(remote.name, {
        remote,
        semaphore: Effect.unsafeMakeSemaphore(remote.concurrency),
        maxQueueTime: maxQueueTime === undefined ? undefined : Duration.decode(maxQueueTime),
        decodePayload: Schema.decodeUnknown(remote.payload as unknown as Schema.Schema<unknown, unknown, never>, {
          errors: "all",
          onExcessProperty: "error"
        }),
        encodeSuccess: Schema.encodeUnknown(remote.success as Schema.Schema<unknown, unknown, never>),
        encodeError: Schema.encodeUnknown(remote.error as Schema.Schema<unknown, unknown, never>),
        running: 0,
        queued: 0
      })
    }

    const unavailable = (): WorkerUnavailable => {
      switch (phase) {
        case "starting":
        case "benchmarking":
          return new WorkerUnavailable({ reason: "starting", detail: "contexts are entering" })
        case "failed":
          return new WorkerUnavailable({ reason: "failed", detail: lastError })
        case "stopped":
          return new WorkerUnavailable({ reason: "stopped" })
        default:
          return new WorkerUnavailable({ reason: "draining" })
      }
    }

    /** Admit, queue and run one call in the worker's fiber set; the caller's interruption reaches the handler. */
    const run = (
      slot: Slot,
      payload: unknown,
      internal: boolean,
      observer?: CallObserver
    ): Effect.Effect<unknown, unknown> =>
      Effect.uninterruptibleMask((restore) => {
        if (phase !== "ready" && !(internal && phase === "benchmarking")) return Effect.fail(unavailable())
        const wouldWait = slot.running + slot.queued >= slot.remote.concurrency
        const score = benchmark?.score
        // Seconds until the work already admitted is done, at the measured rate (as the reference estimates it).
        const waitSeconds = score === undefined || score <= 0 ? undefined : pendingWorkload / score
        const retryAfterMillis = waitSeconds === undefined ? undefined : Math.ceil(waitSeconds * 1000)
        // Admitted calls count whether or not they hold a slot yet: a burst admitted in one tick has none yet.
        if (slot.running + slot.queued >= slot.remote.concurrency + slot.remote.maxQueue) {
          observer?.rejected(workloadOf(slot.remote, payload))
          return Effect.fail(
            new WorkerUnavailable({
              reason: "queue-full",
              detail: `remote "${slot.remote.name}" has ${slot.queued} calls queued (maxQueue ${slot.remote.maxQueue})`,
              retryAfterMillis
            })
          )
        }
        if (
          !internal &&
          wouldWait &&
          waitSeconds !== undefined &&
          slot.maxQueueTime !== undefined &&
          waitSeconds * 1000 > Duration.toMillis(slot.maxQueueTime)
        ) {
          observer?.rejected(workloadOf(slot.remote, payload))
          return Effect.fail(
            new WorkerUnavailable({
              reason: "queue-full",
              detail:
                `remote "${slot.remote.name}": estimated wait ${waitSeconds.toFixed(1)} s exceeds maxQueueTime ` +
                `${Duration.format(slot.maxQueueTime)} (${pendingWorkload} workload pending at ${score!.toFixed(1)}/s)`,
              retryAfterMillis
            })
          )
        }
        const workload = workloadOf(slot.remote, payload)
        pendingWorkload += workload
        observer?.admitted(workload)
        active++
        slot.queued++
        let started = false
        const timeout = slot.remote.timeout === undefined ? callTimeout : Duration.decode(slot.remote.timeout)
        let handler = slot.remote.handler(payload) as Effect.Effect<unknown, unknown>
        if (timeout !== undefined) {
          handler = Effect.timeoutFail(handler, {
            duration: timeout,
            onTimeout: () => new CallTimeout({ remote: slot.remote.name, timeoutMillis: Duration.toMillis(timeout) })
          })
        }
        const job = slot.semaphore.withPermits(1)(
          Effect.suspend(() => {
            started = true
            slot.queued--
            slot.running++
            observer?.started()
            return handler
          })
        )
        return Effect.gen(function* () {
          const fiber = runCall!(Effect.interruptible(job))
          // `await`, not `join`: the caller must not inherit the call fiber's FiberRefs (the worker's runtime).
          const exit = yield* restore(Effect.flatten(Fiber.await(fiber))).pipe(
            Effect.onInterrupt(() => Fiber.interrupt(fiber)),
            Effect.exit
          )
          if (started) slot.running--
          else slot.queued--
          pendingWorkload -= workload
          active--
          if (active === 0 && drained !== undefined) Deferred.unsafeDone(drained, Exit.void)
          return yield* exit
        })
      })

    const call = (remote: Remote.Any, payload: unknown, internal = false) => {
      const slot = slots.get(remote.name)
      if (slot === undefined || slot.remote !== remote) {
        return Effect.fail(new RemoteNotFound({ remote: remote.name, known: [...slots.keys()] }))
      }
      return run(slot, payload, internal)
    }

    const invoke = (name: string, payload: unknown, observer?: CallObserver): Effect.Effect<unknown, InvokeError> => {
      const slot = slots.get(name)
      if (slot === undefined) {
        recorder.unknownRemote++
        return Effect.fail(new RemoteNotFound({ remote: name, known: [...slots.keys()] }))
      }
      return Effect.flatMap(Clock.currentTimeNanos, (t0) =>
        Effect.onExit(invokeSlot(slot, payload, observer), (exit) =>
          Effect.map(Clock.currentTimeNanos, (t1) => {
            const outcome = outcomeOf(exit)
            const ran = outcome !== "invalid" && outcome !== "rejected"
            recorder.record(name, outcome, ran ? Number(t1 - t0) / 1e9 : undefined)
          })
        )
      )
    }

    const invokeSlot = (slot: Slot, payload: unknown, observer?: CallObserver): Effect.Effect<unknown, InvokeError> => {
      const remote = slot.remote
      const name = remote.name
      return slot.decodePayload(payload).pipe(
        Effect.mapError((e) => new PayloadInvalid({ remote: name, issues: issuesOf(e) })),
        Effect.flatMap((decoded) => run(slot, decoded, false, observer)),
        Effect.catchAllCause((cause): Effect.Effect<never, InvokeError> => {
          const failure = Cause.failureOption(cause)
          if (Option.isSome(failure)) {
            const e = failure.value
            if (
              e instanceof PayloadInvalid ||
              e instanceof WorkerUnavailable ||
              e instanceof CallTimeout ||
              e instanceof RemoteNotFound
            )
              return Effect.fail(e)
            // The remote's declared error: encode it for the wire.
            return slot.encodeError(e).pipe(
              Effect.matchEffect({
                onSuccess: (encoded) => Effect.fail(new RemoteFailure({ remote: name, error: e, encoded })),
                onFailure: () => defect(name, cause)
              })
            )
          }
          if (Cause.isInterruptedOnly(cause)) {
            return Effect.failCause(cause as Cause.Cause<never>)
          }
          return defect(name, cause)
        }),
        Effect.flatMap((value) =>
          slot.encodeSuccess(value).pipe(
            Effect.catchAll((e) =>
              Effect.gen(function* () {
                const id = nextId()
                yield* Effect.logError(
                  `Remote "${name}" returned a value its success schema cannot encode [id ${id}]`,
                  e
                )
                return yield* new CallFailed({
                  remote: name,
                  reason: "encode",
                  detail: "the result does not match the remote's success schema",
                  id
                })
              })
            )
          )
        )
      )
    }

    const defect = (name: string, cause: Cause.Cause<unknown>) =>
      Effect.gen(function* () {
        const id = nextId()
        yield* Effect.logError(`Remote "${name}" failed with a defect [id ${id}]`, cause)
        return yield* new CallFailed({
          remote: name,
          reason: "defect",
          detail: "internal error in the remote function",
          id
        })
      })

    const startupFailed = (cause: Cause.Cause<unknown>): StartupFailed => {
      const records = registry.snapshot()
      const rolledBack = records
        .filter((r) => r.state === "rolled-back" || r.state === "rollback-failed")
        .map((r) => r.key)
      const rollbackFailures = records
        .filter((r) => r.state === "rollback-failed")
        .map((r) => new ContextFailure({ key: r.key, reason: "failed", detail: r.error ?? "unknown" }))
      const bench = Cause.failureOption(cause).pipe(Option.filter((e) => e instanceof BenchmarkFailed))
      if (Option.isSome(bench)) {
        return new StartupFailed({
          context: bench.value.remote,
          reason: "benchmark-failed",
          detail: bench.value.detail,
          rolledBack,
          rollbackFailures
        })
      }
      const failed = records
        .filter((r) => r.state === "failed" || r.state === "timed-out")
        .sort((a, b) => (a.enterEndedAt ?? 0) - (b.enterEndedAt ?? 0))[0]
      return new StartupFailed({
        context: failed?.key ?? "(start-up)",
        reason:
          failed === undefined
            ? Cause.isInterruptedOnly(cause)
              ? "interrupted"
              : "failed"
            : failed.state === "timed-out"
              ? "timed-out"
              : "failed",
        detail: failed?.error ?? (Cause.isInterruptedOnly(cause) ? "interrupted" : Cause.pretty(cause)),
        rolledBack,
        rollbackFailures
      })
    }

    const startup = Effect.gen(function* () {
      const built = yield* Layer.buildWithScope(deployment.layer, contextsScope).pipe(
        Effect.locally(WorkerContext.currentRegistry, registry),
        Effect.exit
      )
      let result: Exit.Exit<unknown, unknown> = built
      if (Exit.isSuccess(built)) {
        const run = yield* FiberSet.runtime(inflight)<Provides>().pipe(
          Effect.provide(built.value),
          Effect.locally(WorkerContext.currentRegistry, registry)
        )
        runCall = run as unknown as typeof runCall
        if (options.benchmark !== false) {
          yield* setPhase("benchmarking")
          const bench = yield* Benchmark.run(deployment.benchmarkRemote, (p) =>
            call(deployment.benchmarkRemote, p, true)
          ).pipe(Effect.exit)
          if (Exit.isSuccess(bench)) benchmark = bench.value
          result = bench
        }
      }
      if (Exit.isSuccess(result)) {
        registry.phase = "running"
        readyAt = yield* Clock.currentTimeMillis
        yield* setPhase("ready")
        yield* Deferred.succeed(ready, undefined)
      } else {
        // Roll back: exit every context that entered, handing it the failure.
        yield* Scope.close(contextsScope, result)
        const error = startupFailed(result.cause)
        yield* setPhase("failed", error.message)
        yield* Deferred.fail(ready, error)
      }
    })
    const startupFiber = yield* Effect.forkIn(startup, outer)

    const shutdownNow = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.gen(function* () {
        if (phase === "ready" || phase === "starting" || phase === "benchmarking") {
          const wasReady = phase === "ready"
          yield* setPhase("draining")
          if (wasReady) {
            // Set the latch before reading the count: a call that finishes from here on releases it.
            drained = yield* Deferred.make<void>()
            if (active > 0) {
              // Interruptible: shutdown runs uninterruptibly, and a timeout cannot stop an uninterruptible wait.
              yield* Effect.interruptible(Deferred.await(drained)).pipe(Effect.timeoutOption(drainTimeout))
            }
          }
        }
        // Calls still running after the grace period are interrupted; their callers see the interruption.
        yield* FiberSet.clear(inflight)
        const startupFailedAlready = phase === "failed"
        if (!startupFailedAlready) yield* setPhase("stopping")
        yield* Fiber.interrupt(startupFiber)
        if (registry.phase === "running") registry.phase = "stopping"
        yield* Scope.close(contextsScope, exit)
        if (!(yield* Deferred.isDone(ready))) {
          // Shut down during start-up: what entered was rolled back.
          yield* Deferred.fail(ready, startupFailed(Cause.interrupt(FiberId.none)))
        }
        const failures = registry
          .snapshot()
          .filter((r) => r.state === "exit-failed" || r.state === "exit-timed-out")
          .map(
            (r) =>
              new ContextFailure({
                key: r.key,
                reason: r.state === "exit-timed-out" ? "timed-out" : "failed",
                detail: r.error ?? "unknown"
              })
          )
        if (!startupFailedAlready) yield* setPhase("stopped")
        if (failures.length > 0) return yield* new ShutdownFailed({ failures })
      })

    // Shutdown runs once, whoever asks first (an explicit shutdown, a signal, the scope closing); the others await it.
    let shutdownResult: Deferred.Deferred<void, ShutdownFailed> | undefined
    const shutdown = (exit: Exit.Exit<unknown, unknown>): Effect.Effect<void, ShutdownFailed> =>
      Effect.suspend(() => {
        if (shutdownResult !== undefined) return Deferred.await(shutdownResult)
        const result = Deferred.unsafeMake<void, ShutdownFailed>(FiberId.none)
        shutdownResult = result
        return Effect.uninterruptible(Effect.intoDeferred(shutdownNow(exit), result)).pipe(
          Effect.zipRight(Deferred.await(result))
        )
      })
    yield* Effect.addFinalizer((exit) => Effect.ignoreLogged(shutdown(exit)))

    const report = Effect.sync((): Report => ({
      deployment: deployment.name,
      phase,
      startedAt,
      readyAt,
      contexts: registry.snapshot(),
      benchmark,
      error: lastError
    }))

    return {
      deployment: deployment as Deployment.Deployment<Provides, any, Remotes>,
      status,
      report,
      awaitReady: Deferred.await(ready),
      invoke,
      call: ((remote: Remote.Any, payload: unknown) => call(remote, payload)) as Worker<Provides, Remotes>["call"],
      stats: Effect.sync(() =>
        [...slots.values()].map((s) => ({
          name: s.remote.name,
          running: s.running,
          queued: s.queued,
          concurrency: s.remote.concurrency,
          maxQueue: s.remote.maxQueue
        }))
      ),
      metrics: Effect.sync((): Metrics.Snapshot => ({
        deployment: deployment.name,
        phase,
        remotes: [...recorder.remotes.values()].map((r) => {
          const slot = slots.get(r.name)
          return { ...r, running: slot?.running ?? 0, queued: slot?.queued ?? 0 }
        }),
        unknownRemote: recorder.unknownRemote,
        contexts: registry.snapshot(),
        score: benchmark?.score,
        pendingWorkload
      })),
      shutdown: shutdown(Exit.void),
      shutdownWith: shutdown,
      registry
    }
  })
