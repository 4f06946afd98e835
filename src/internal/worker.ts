import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  Layer,
  Mailbox,
  Option,
  ParseResult,
  Runtime,
  Schema,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import * as Benchmark from "../Benchmark.js"
import type * as Deployment from "../Deployment.js"
import type * as Remote from "../Remote.js"
import * as WorkerContext from "../WorkerContext.js"
import type { WorkerOptions } from "../WorkerConfig.js"
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
import { Admission, Load } from "./admission.js"
import * as Batcher from "./batcher.js"
import { formatIssues } from "./issues.js"
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

export type Options = WorkerOptions

export type InvokeError = RemoteNotFound | PayloadInvalid | WorkerUnavailable | CallTimeout | CallFailed | RemoteFailure

/**
 * What `call` returns for a remote: an Effect of its success for a plain or batched remote, a Stream of its elements
 * for a stream remote. Either fails with the remote's declared error or the worker's own refusals.
 */
export type CallResult<Rm> = Rm extends Remote.AnyStream
  ? Stream.Stream<
      Schema.Schema.Type<Rm["element"]>,
      Schema.Schema.Type<Rm["error"]> | WorkerUnavailable | CallTimeout | RemoteNotFound
    >
  : Rm extends Remote.Any
    ? Effect.Effect<
        Schema.Schema.Type<Rm["success"]>,
        Schema.Schema.Type<Rm["error"]> | WorkerUnavailable | CallTimeout | RemoteNotFound
      >
    : never

export interface Worker<Provides, Remotes extends Remote.Definition> {
  readonly deployment: Deployment.Deployment<Provides, any, Remotes>
  readonly status: SubscriptionRef.SubscriptionRef<Status>
  readonly report: Effect.Effect<Report>
  readonly awaitReady: Effect.Effect<void, StartupFailed>
  readonly invoke: (name: string, payload: unknown) => Effect.Effect<unknown, InvokeError>
  readonly call: <Rm extends Remotes>(remote: Rm, payload: Schema.Schema.Type<Rm["payload"]>) => CallResult<Rm>
  readonly stats: Effect.Effect<ReadonlyArray<RemoteStats>>
  readonly metrics: Effect.Effect<Metrics.Snapshot>
  readonly shutdown: Effect.Effect<void, ShutdownFailed>
  readonly shutdownWith: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void, ShutdownFailed>
  readonly registry: Registry
}

/**
 * One remote as a running worker holds it: its admission, and its Schema codecs built once (building a decoder per
 * call shows in a trivial call's profile). The codecs are synchronous where the Schema allows (`undefined` when it
 * needs an async step); the call path falls back to the Effect form then.
 */
export interface Entry {
  readonly remote: Remote.Definition
  readonly admission: Admission
  /** A batched remote's batcher (made once the contexts have entered): its calls are submitted to it. */
  batcher: Batcher.Batcher<unknown, unknown, unknown> | undefined
  readonly maxQueueTime: Duration.Duration | undefined
  readonly timeout: Duration.Duration | undefined
  readonly decodeSync: (u: unknown) => Either.Either<unknown, PayloadInvalid> | undefined
  readonly decode: (u: unknown) => Effect.Effect<unknown, PayloadInvalid>
  /** The success value by the success Schema; for a stream remote, one element by the element Schema. */
  readonly encodeSuccess: (u: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly encodeError: (u: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  /** The encoders, synchronously; `undefined` when the Schema needs an async step (use the Effect form then). */
  readonly encodeSuccessSync: (u: unknown) => Either.Either<unknown, ParseResult.ParseError> | undefined
  readonly encodeErrorSync: (u: unknown) => Either.Either<unknown, ParseResult.ParseError> | undefined
}

/**
 * A call started by {@link Core.start}: its exit when the handler's Effect was an `Exit` already (`Effect.succeed`,
 * `Exit.fail`: no fiber is needed), else the fiber running it.
 */
export type Started =
  Exit.Exit<unknown, RemoteFailure | CallTimeout> | Fiber.RuntimeFiber<unknown, RemoteFailure | CallTimeout>

/** A call admitted by {@link Core.admit}: its workload is pending until `execute` ends. */
export interface Admitted {
  readonly workload: number
}

/**
 * The worker as a transport drives it, one step at a time (the HTTP pipeline reads it top to bottom): find the
 * remote, admit the call synchronously (or refuse it), fork its execution with the entered contexts, record how it
 * ended. `invoke` and `call` are built from the same steps.
 */
export interface Core<Provides, Remotes extends Remote.Definition> extends Worker<Provides, Remotes> {
  readonly entry: (name: string) => Entry | undefined
  readonly knownRemotes: ReadonlyArray<string>
  /** Admit a call now, or say why not. `internal` calls (the benchmark) are admitted while benchmarking. */
  readonly admit: (entry: Entry, payload: unknown, internal?: boolean) => Either.Either<Admitted, WorkerUnavailable>
  /** The workload units of one call (the remote's `workload` function, else its default). */
  readonly workload: (entry: Entry, payload: unknown) => number
  /**
   * Run an admitted call of a plain or batched remote: wait for a slot (`onStart` when it has one; for a batched
   * remote, when its batch starts), run the handler under its timeout, release. The remote's declared error arrives
   * as `RemoteFailure` (not encoded yet: `encoded` is undefined), never mixed with the worker's own errors.
   */
  readonly execute: (
    entry: Entry,
    payload: unknown,
    admitted: Admitted,
    onStart?: () => void
  ) => Effect.Effect<unknown, RemoteFailure | CallTimeout>
  /**
   * `execute` for a transport that answers from the call's exit: on the uncontended path the slot is taken
   * synchronously and the handler is forked as it is (the slot released by the fiber's observer), or not forked at all
   * when its Effect is complete already (the exit is returned).
   */
  readonly start: (entry: Entry, payload: unknown, admitted: Admitted, onStart?: () => void) => Started
  /**
   * Run an admitted call of a stream remote: when run, the stream waits for a slot (`onStart` when it has one) and
   * holds it until it ends; its elements come as the handler produces them (not encoded); the timeout covers the
   * whole stream. It must be run once (its workload is pending until it ends), with the entered contexts (`fork`).
   */
  readonly executeStream: (
    entry: Entry,
    payload: unknown,
    admitted: Admitted,
    onStart?: () => void
  ) => Stream.Stream<unknown, RemoteFailure | CallTimeout>
  /** Fork an effect with the entered contexts, tracked so shutdown can interrupt it after the drain timeout. */
  readonly fork: <A, E>(effect: Effect.Effect<A, E, any>, onDone?: () => void) => Fiber.RuntimeFiber<A, E>
  /** Count one call in the metrics. */
  readonly record: (name: string | undefined, outcome: Metrics.Outcome, seconds: number | undefined) => void
  /** Count elements a stream remote sent. */
  readonly recordItems: (name: string, items: number) => void
  readonly phase: () => Phase
  readonly statusNow: () => Status
  readonly reportNow: () => Report
  readonly metricsNow: () => Metrics.Snapshot
  /** Why a call cannot be taken in the current phase. */
  readonly unavailable: () => WorkerUnavailable
}

const DEFAULT_DRAIN = Duration.seconds(30)

/** Elements a stream called in process may run ahead of its consumer. */
const BRIDGE_CAPACITY = 16

/** The size a batcher starts at: a fixed size, or 1 until the benchmark chooses. */
const batchSize = (batch: Remote.Batching<any, any, any, any>): number => (batch.maxSize === "auto" ? 1 : batch.maxSize)

let callIds = 0
/** An id to find a failure in the log by; the response carries it, never the cause. */
export const failureId = (): string => `${Date.now().toString(36)}-${(++callIds).toString(36)}`

/**
 * The issues of a parse error as `FieldIssue`s, bounded (internal/issues.ts): at most 20 (then one saying more were
 * left out), each offending value previewed rather than written out, messages and path segments cut. A megabyte of
 * bad input does not come back in the error body, and a deeply nested value is never formatted recursively.
 */
export const issuesOf = (error: ParseResult.ParseError): ReadonlyArray<FieldIssue> =>
  formatIssues(error).map((i) => new FieldIssue(i))

/** A synchronous parser when the Schema allows one; `undefined` from it means "needs the async form". */
const syncDecoder = (remote: Remote.Definition) => {
  const schema = remote.payload as unknown as Schema.Schema<unknown, unknown, never>
  const options = { errors: "all", onExcessProperty: "error" } as const
  const sync = ParseResult.decodeUnknownEither(schema, options)
  const async = Schema.decodeUnknown(schema, options)
  const invalid = (e: ParseResult.ParseError) => new PayloadInvalid({ remote: remote.name, issues: issuesOf(e) })
  return {
    decodeSync: (u: unknown): Either.Either<unknown, PayloadInvalid> | undefined => {
      const r = sync(u)
      if (Either.isRight(r)) return Either.right(r.right)
      return hasForbidden(r.left) ? undefined : Either.left(invalid(new ParseResult.ParseError({ issue: r.left })))
    },
    decode: (u: unknown) => Effect.mapError(async(u), invalid)
  }
}

/** A Schema's synchronous encoder, `undefined` from it when the Schema needs an async step. */
const syncEncoder = (schema: Schema.Schema.All) => {
  const encode = ParseResult.encodeUnknownEither(schema as Schema.Schema<unknown, unknown, never>)
  return (u: unknown): Either.Either<unknown, ParseResult.ParseError> | undefined => {
    const r = encode(u)
    if (Either.isRight(r)) return Either.right(r.right)
    return hasForbidden(r.left) ? undefined : Either.left(new ParseResult.ParseError({ issue: r.left }))
  }
}

/** Whether a parse issue says "this step is asynchronous" (run it with the Effect decoder). */
const hasForbidden = (issue: ParseResult.ParseIssue): boolean => {
  const stack: Array<ParseResult.ParseIssue> = [issue]
  while (stack.length > 0) {
    const i = stack.pop()!
    switch (i._tag) {
      case "Forbidden":
        return true
      case "Composite":
        if (Array.isArray(i.issues)) stack.push(...(i.issues as ReadonlyArray<ParseResult.ParseIssue>))
        else stack.push(i.issues as ParseResult.ParseIssue)
        break
      case "Pointer":
      case "Refinement":
      case "Transformation":
        stack.push(i.issue)
        break
    }
  }
  return false
}

/** A call's workload by the remote's `workload` function, or `fallback` (none, a throw, or not a finite count). */
const workloadOf = (remote: Remote.Definition, payload: unknown, fallback: number): number => {
  const f = remote.benchmark?.workload
  if (f === undefined) return fallback
  try {
    const w = f(payload)
    return Number.isFinite(w) && w >= 0 ? w : fallback
  } catch {
    // A workload function that throws must not fail the call: it only feeds an estimate.
    return fallback
  }
}

/** How an in-process call ended, for the metrics. */
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
      return failure.value.reason === "encode" ? "unencodable" : "defect"
  }
}

/**
 * The lifecycle state a worker keeps: where it is, when it got ready, the last error and the benchmark. One object
 * with named fields instead of `let`s spread over a closure.
 */
class Lifecycle {
  phase: Phase = "starting"
  since = 0
  readyAt: number | undefined
  lastError: string | undefined
  benchmark: Benchmark.Result | undefined

  unavailable(): WorkerUnavailable {
    switch (this.phase) {
      case "starting":
      case "benchmarking":
        return new WorkerUnavailable({ reason: "starting", detail: "contexts are entering" })
      case "failed":
        return new WorkerUnavailable({ reason: "failed", detail: this.lastError })
      case "stopped":
        return new WorkerUnavailable({ reason: "stopped" })
      default:
        return new WorkerUnavailable({ reason: "draining" })
    }
  }
}

/** @internal */
export const start = <Provides, E, Remotes extends Remote.Definition>(
  deployment: Deployment.Deployment<Provides, E, Remotes>,
  options: Options = {}
): Effect.Effect<Core<Provides, Remotes>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const outer = yield* Effect.scope
    const registry = new Registry(deployment.contexts)
    activeRegistries.set(deployment, registry)
    latest.registry = registry
    const startedAt = yield* Clock.currentTimeMillis
    const status = yield* SubscriptionRef.make<Status>({ phase: "starting", since: startedAt })
    const contextsScope = yield* Scope.make()
    const ready = yield* Deferred.make<void, StartupFailed>()
    const drainTimeout = Duration.decode(options.drainTimeout ?? DEFAULT_DRAIN)
    const callTimeout = options.callTimeout === undefined ? undefined : Duration.decode(options.callTimeout)
    const recorder = new Metrics.Recorder(deployment.remotes.keys())
    const life = new Lifecycle()
    life.since = startedAt
    const load = new Load()
    // Calls in flight, interrupted when the drain runs out of time.
    const inflight = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
    // Set once the contexts have entered: calls fork from a runtime that already holds them (providing them per call
    // cost a third of a trivial call's time).
    let runtime: Runtime.Runtime<Provides> | undefined
    // `Runtime.runFork(runtime)`, made once: each call's fork goes straight to it.
    let runFork: (<A, E>(effect: Effect.Effect<A, E, Provides>) => Fiber.RuntimeFiber<A, E>) | undefined
    // Batched remotes' batchers run their batches here: closed after the calls, before the contexts exit.
    const batchersScope = yield* Scope.make()

    const setPhase = (next: Phase, error?: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        life.phase = next
        life.since = now
        if (error !== undefined) life.lastError = error
        return SubscriptionRef.set(status, { phase: next, since: now, error })
      })

    const entries = new Map<string, Entry>()
    for (const remote of deployment.remotes.values()) {
      const maxQueueTime = remote.maxQueueTime ?? options.maxQueueTime
      const timeout = remote.timeout ?? callTimeout
      // A batched remote's calls all enter its batcher, which gathers them and runs `concurrency` batches at once:
      // admission only counts them, and full batches in every slot is what "running" means.
      const batch = remote.kind === "unary" ? remote.batch : undefined
      const slots = batch === undefined ? remote.concurrency : batchSize(batch) * remote.concurrency
      const successSchema = remote.kind === "stream" ? remote.element : remote.success
      entries.set(remote.name, {
        remote,
        admission: new Admission(slots, remote.maxQueue),
        batcher: undefined,
        maxQueueTime: maxQueueTime === undefined ? undefined : Duration.decode(maxQueueTime),
        timeout: timeout === undefined ? undefined : Duration.decode(timeout),
        ...syncDecoder(remote),
        encodeSuccess: Schema.encodeUnknown(successSchema as Schema.Schema<unknown, unknown, never>),
        encodeError: Schema.encodeUnknown(remote.error as Schema.Schema<unknown, unknown, never>),
        encodeSuccessSync: syncEncoder(successSchema),
        encodeErrorSync: syncEncoder(remote.error)
      })
    }
    const knownRemotes = [...entries.keys()]

    const admit = (entry: Entry, payload: unknown, internal = false): Either.Either<Admitted, WorkerUnavailable> => {
      if (life.phase !== "ready" && !(internal && life.phase === "benchmarking")) return Either.left(life.unavailable())
      const { admission, remote } = entry
      const score = life.benchmark?.score
      const waitSeconds = load.waitSeconds(score)
      const retryAfterMillis = waitSeconds === undefined ? undefined : Math.ceil(waitSeconds * 1000)
      // Admitted calls count whether or not they hold a slot yet: a burst admitted in one tick has none yet.
      if (!admission.hasRoom()) {
        return Either.left(
          new WorkerUnavailable({
            reason: "queue-full",
            detail: `remote "${remote.name}" has ${admission.queued} calls queued (maxQueue ${remote.maxQueue})`,
            retryAfterMillis
          })
        )
      }
      if (!internal && admission.wouldWait() && load.exceeds(score, entry.maxQueueTime)) {
        return Either.left(
          new WorkerUnavailable({
            reason: "queue-full",
            detail:
              `remote "${remote.name}": estimated wait ${waitSeconds!.toFixed(1)} s exceeds maxQueueTime ` +
              `${Duration.format(entry.maxQueueTime!)} (${load.pending} workload pending at ${score!.toFixed(1)}/s)`,
            retryAfterMillis
          })
        )
      }
      const workload = workloadFor(entry, payload)
      load.add(workload)
      return Either.right({ workload })
    }

    /** A remote's declared error, wrapped so that nothing the worker adds is mistaken for it. */
    const declared = (entry: Entry, error: unknown) =>
      new RemoteFailure({ remote: entry.remote.name, error, encoded: undefined })

    /** The handler's Effect as a call runs it: its declared error wrapped first, under the call timeout if any. */
    const asCall = (
      entry: Entry,
      effect: Effect.Effect<unknown, unknown>
    ): Effect.Effect<unknown, RemoteFailure | CallTimeout> => {
      const handler = Effect.mapError(effect, (error) => declared(entry, error))
      const timeout = entry.timeout
      if (timeout === undefined) return handler
      return Effect.timeoutFail(handler, { duration: timeout, onTimeout: () => timedOut(entry, timeout) })
    }

    /** The handler of one call, run when the Effect runs (a handler that throws then dies in the call's fiber). */
    const handlerOf = (entry: Entry, payload: unknown): Effect.Effect<unknown, RemoteFailure | CallTimeout> =>
      asCall(
        entry,
        Effect.suspend(() => (entry.remote as Remote.Any).handler(payload) as Effect.Effect<unknown, unknown>)
      )

    /** Call the handler now: its Effect, or a defect when it throws instead of returning one (as in a fiber). */
    const callHandler = (entry: Entry, payload: unknown): Effect.Effect<unknown, unknown> => {
      try {
        return (entry.remote as Remote.Any).handler(payload) as Effect.Effect<unknown, unknown>
      } catch (defect) {
        return Exit.die(defect)
      }
    }

    /**
     * A call's workload: the remote's `workload` function, else for a stream remote the elements per call its
     * benchmark measured (its unit is one element), else the reference's default.
     */
    const workloadFor = (entry: Entry, payload: unknown): number => {
      const measured = life.benchmark?.remote === entry.remote.name ? life.benchmark.stream : undefined
      return workloadOf(entry.remote, payload, measured?.meanItemsPerCall ?? Benchmark.DEFAULT_WORKLOAD)
    }

    const timedOut = (entry: Entry, timeout: Duration.Duration) =>
      new CallTimeout({ remote: entry.remote.name, timeoutMillis: Duration.toMillis(timeout) })

    const execute = (
      entry: Entry,
      payload: unknown,
      admitted: Admitted,
      onStart?: () => void
    ): Effect.Effect<unknown, RemoteFailure | CallTimeout> => {
      if (entry.batcher !== undefined) return executeBatched(entry, entry.batcher, payload, admitted, onStart)
      return Effect.ensuring(
        entry.admission.run(handlerOf(entry, payload), onStart),
        Effect.sync(() => load.remove(admitted.workload))
      )
    }

    const startCall = (entry: Entry, payload: unknown, admitted: Admitted, onStart?: () => void): Started => {
      // A batched call waits for its batch in any case: no fast path.
      if (entry.batcher !== undefined) return fork(executeBatched(entry, entry.batcher, payload, admitted, onStart))
      const slot = entry.admission.tryTake()
      if (slot === undefined) {
        return fork(entry.admission.run(handlerOf(entry, payload), onStart), () => load.remove(admitted.workload))
      }
      onStart?.()
      // A handler whose Effect is already complete needs no fiber: its exit is the answer (a fiber would only hand
      // it back, at several times the cost of a trivial call). Anything with work to run gets its fiber.
      const effect = callHandler(entry, payload)
      if (Exit.isExit(effect)) {
        slot.release()
        load.remove(admitted.workload)
        return Exit.mapError(effect, (error) => declared(entry, error))
      }
      return fork(asCall(entry, effect), () => {
        slot.release()
        load.remove(admitted.workload)
      })
    }

    /**
     * A batched call: submitted to the remote's batcher, which runs it with others. It is queued until its batch
     * starts, then running; the timeout counts from that start, as a plain call's counts from its slot.
     */
    const executeBatched = (
      entry: Entry,
      batcher: Batcher.Batcher<unknown, unknown, unknown>,
      payload: unknown,
      admitted: Admitted,
      onStart: (() => void) | undefined
    ): Effect.Effect<unknown, RemoteFailure | CallTimeout> =>
      Effect.suspend(() => {
        const counted = entry.admission.track()
        const timeout = entry.timeout
        const began = timeout === undefined ? undefined : Deferred.unsafeMake<void>(FiberId.none)
        const started = () => {
          counted.start()
          if (began !== undefined) Deferred.unsafeDone(began, Exit.void)
          onStart?.()
        }
        let result: Effect.Effect<unknown, RemoteFailure | CallTimeout> = Effect.mapError(
          batcher.submit(payload, { started }),
          (error) => declared(entry, error)
        )
        if (timeout !== undefined) {
          result = Effect.raceFirst(
            result,
            Deferred.await(began!).pipe(
              Effect.zipRight(Effect.sleep(timeout)),
              Effect.zipRight(Effect.fail(timedOut(entry, timeout)))
            )
          )
        }
        return Effect.ensuring(
          result,
          Effect.sync(() => {
            counted.done()
            load.remove(admitted.workload)
          })
        )
      })

    const executeStream = (
      entry: Entry,
      payload: unknown,
      admitted: Admitted,
      onStart?: () => void
    ): Stream.Stream<unknown, RemoteFailure | CallTimeout> => {
      const remote = entry.remote as Remote.AnyStream
      // A handler that throws while building its stream is a defect of the call, not of the worker.
      let elements: Stream.Stream<unknown, RemoteFailure | CallTimeout> = Stream.suspend(
        () => remote.handler(payload) as Stream.Stream<unknown, unknown>
      ).pipe(Stream.mapError((error) => declared(entry, error)))
      const timeout = entry.timeout
      if (timeout !== undefined) {
        // The whole stream, from its start: a per-element timeout would let a slow stream run forever.
        elements = Stream.interruptWhen(
          elements,
          Effect.zipRight(Effect.sleep(timeout), Effect.fail(timedOut(entry, timeout)))
        )
      }
      return Stream.unwrapScoped(
        Effect.addFinalizer(() => Effect.sync(() => load.remove(admitted.workload))).pipe(
          Effect.zipRight(entry.admission.hold(onStart)),
          Effect.as(elements)
        )
      )
    }

    /** Fork with the entered contexts, tracked for the drain; `onDone` runs when the fiber ends (one observer). */
    const fork = <A, E>(effect: Effect.Effect<A, E, any>, onDone?: () => void): Fiber.RuntimeFiber<A, E> => {
      const fiber = runFork!(effect as Effect.Effect<A, E, Provides>)
      const tracked = fiber as Fiber.RuntimeFiber<unknown, unknown>
      inflight.add(tracked)
      fiber.addObserver(() => {
        inflight.delete(tracked)
        onDone?.()
      })
      return fiber
    }

    /** Wait for a call's fiber without inheriting its FiberRefs; interrupting the waiter interrupts the call. */
    const awaitCall = <A, E>(fiber: Fiber.RuntimeFiber<A, E>): Effect.Effect<A, E> =>
      Effect.flatten(Fiber.await(fiber)).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))

    /** Fork with the entered contexts, and wait for it ({@link awaitCall}). */
    const runForked = <A, E>(effect: Effect.Effect<A, E, any>): Effect.Effect<A, E> =>
      Effect.suspend(() => awaitCall(fork(effect)))

    const notFound = (name: string) => new RemoteNotFound({ remote: name, known: knownRemotes })

    /** Admit and run a decoded payload, typed: the remote's declared error comes back as itself. */
    const callEntry = (
      entry: Entry,
      payload: unknown,
      internal: boolean
    ): Effect.Effect<unknown, RemoteFailure | CallTimeout | WorkerUnavailable> =>
      Effect.suspend((): Effect.Effect<unknown, RemoteFailure | CallTimeout | WorkerUnavailable> => {
        const admitted = admit(entry, payload, internal)
        if (Either.isLeft(admitted)) return Effect.fail(admitted.left)
        // As the HTTP pipeline starts a call: a complete Effect is its own exit, anything else runs in a fiber of the
        // worker's (with the entered contexts, not the caller's FiberRefs), and interrupting the caller interrupts it.
        const started = startCall(entry, payload, admitted.right)
        if (Exit.isExit(started)) return started
        return awaitCall(started)
      })

    const callUnary = (remote: Remote.Any, payload: unknown, internal = false) => {
      const entry = entries.get(remote.name)
      if (entry === undefined || entry.remote !== remote) return Effect.fail(notFound(remote.name))
      return Effect.catchIf(
        callEntry(entry, payload, internal),
        (e): e is RemoteFailure => e._tag === "RemoteFailure",
        (e) => Effect.fail(e.error)
      )
    }

    /**
     * Run a stream on a fiber of the worker's (with the entered contexts, tracked so the drain can interrupt it) and
     * hand its elements to the consumer, in whatever fiber it runs, through a small buffer: a slow consumer slows the
     * producer. A consumer that stops early interrupts the producer and waits for its finalizers. `onExit` learns how
     * the producer ended, and whether it was the consumer that stopped it.
     */
    const bridge = <A, E>(
      stream: Stream.Stream<A, E, any>,
      onExit?: (exit: Exit.Exit<void, E>, consumerLeft: boolean) => Effect.Effect<void>
    ): Stream.Stream<A, E> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const mailbox = yield* Mailbox.make<A, E>(BRIDGE_CAPACITY)
          let consumerLeft = false
          const fiber = fork(
            Stream.runForEachChunk(stream, (chunk) => mailbox.offerAll(chunk)).pipe(
              Effect.onExit((exit) =>
                Effect.zipRight(onExit === undefined ? Effect.void : onExit(exit, consumerLeft), mailbox.done(exit))
              )
            )
          )
          yield* Effect.addFinalizer(() =>
            Effect.suspend(() => {
              consumerLeft = true
              return Fiber.interrupt(fiber)
            })
          )
          return Mailbox.toStream(mailbox)
        })
      )

    /** Admit a stream call when the stream runs (in the producer's fiber), then run it. */
    const admitted = (
      entry: Entry,
      payload: unknown,
      internal: boolean
    ): Stream.Stream<unknown, RemoteFailure | CallTimeout | WorkerUnavailable> =>
      Stream.suspend((): Stream.Stream<unknown, RemoteFailure | CallTimeout | WorkerUnavailable> => {
        const admission = admit(entry, payload, internal)
        if (Either.isLeft(admission)) return Stream.fail(admission.left)
        return executeStream(entry, payload, admission.right)
      })

    const callStream = (remote: Remote.AnyStream, payload: unknown, internal = false) => {
      const entry = entries.get(remote.name)
      if (entry === undefined || entry.remote !== remote) return Stream.fail(notFound(remote.name))
      return Stream.mapError(bridge(admitted(entry, payload, internal)), (e) =>
        e._tag === "RemoteFailure" ? e.error : e
      )
    }

    const call = (remote: Remote.Definition, payload: unknown, internal = false) =>
      remote.kind === "stream" ? callStream(remote, payload, internal) : callUnary(remote, payload, internal)

    const defect = (name: string, cause: Cause.Cause<unknown>) =>
      Effect.gen(function* () {
        const id = failureId()
        yield* Effect.logError(`Remote "${name}" failed with a defect [id ${id}]`, cause)
        return yield* new CallFailed({
          remote: name,
          reason: "defect",
          detail: "internal error in the remote function",
          id
        })
      })

    /** A failed call as `invoke` reports it: the declared error encoded in a `RemoteFailure`, defects with an id. */
    const invokeFailure = (entry: Entry, cause: Cause.Cause<unknown>): Effect.Effect<never, InvokeError> => {
      const name = entry.remote.name
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        const e = failure.value as InvokeError
        if (e._tag !== "RemoteFailure") return Effect.fail(e)
        return entry.encodeError(e.error).pipe(
          Effect.matchEffect({
            onSuccess: (encoded) => Effect.fail(new RemoteFailure({ remote: name, error: e.error, encoded })),
            onFailure: () => defect(name, cause)
          })
        )
      }
      // The caller's own interruption never gets here (its handlers do not run); the shutdown's comes after "ready". An
      // interruption while ready is the remote's own doing (`Effect.interrupt`): a defect, as the HTTP pipeline says,
      // not an interruption of a caller that nobody interrupted.
      if (Cause.isInterruptedOnly(cause) && life.phase !== "ready") return Effect.failCause(cause as Cause.Cause<never>)
      return defect(name, cause)
    }

    const encodeResult = (entry: Entry, value: unknown): Effect.Effect<unknown, CallFailed> => {
      const name = entry.remote.name
      const what = entry.remote.kind === "stream" ? "an element its element schema" : "a value its success schema"
      return entry.encodeSuccess(value).pipe(
        Effect.catchAll((e) =>
          Effect.gen(function* () {
            const id = failureId()
            yield* Effect.logError(`Remote "${name}" returned ${what} cannot encode [id ${id}]`, e)
            return yield* new CallFailed({
              remote: name,
              reason: "encode",
              detail:
                entry.remote.kind === "stream"
                  ? "an element does not match the remote's element schema"
                  : "the result does not match the remote's success schema",
              id
            })
          })
        )
      )
    }

    /** The untyped in-process path: decode, admit, run, encode the result (or the declared error) by the Schemas. */
    const invokeEntry = (entry: Entry, payload: unknown): Effect.Effect<unknown, InvokeError> =>
      entry.decode(payload).pipe(
        Effect.flatMap((decoded) => callEntry(entry, decoded, false)),
        Effect.catchAllCause((cause) => invokeFailure(entry, cause)),
        Effect.flatMap((value) => encodeResult(entry, value))
      )

    const timed = (name: string, exit: Exit.Exit<unknown, InvokeError>, t0: bigint, outcome?: Metrics.Outcome) =>
      Effect.map(Clock.currentTimeNanos, (t1) => {
        const o = outcome ?? outcomeOf(exit)
        const ran = o !== "invalid" && o !== "rejected"
        recorder.record(name, o, ran ? Number(t1 - t0) / 1e9 : undefined)
      })

    /**
     * `invoke` of a stream remote: the payload is decoded now (`PayloadInvalid` fails the Effect); the Stream it
     * returns is the call, admitted when it runs, with its elements encoded by the element Schema. Counted in the
     * metrics when it ends (`cancelled` when the consumer stops it early).
     */
    const invokeStream = (entry: Entry, payload: unknown): Effect.Effect<unknown, InvokeError> => {
      const name = entry.remote.name
      return entry.decode(payload).pipe(
        Effect.tapError(() => Effect.sync(() => recorder.record(name, "invalid", undefined))),
        Effect.map((decoded) =>
          Stream.unwrap(
            Effect.map(Clock.currentTimeNanos, (t0) =>
              bridge(
                admitted(entry, decoded, false).pipe(
                  Stream.mapEffect((element) => encodeResult(entry, element)),
                  Stream.mapChunks((chunk) => {
                    recorder.items(name, chunk.length)
                    return chunk
                  }),
                  Stream.catchAllCause((cause) => Stream.fromEffect(invokeFailure(entry, cause)))
                ),
                (exit, consumerLeft) => timed(name, exit, t0, consumerLeft ? "cancelled" : undefined)
              )
            )
          )
        )
      )
    }

    const invoke = (name: string, payload: unknown): Effect.Effect<unknown, InvokeError> => {
      const entry = entries.get(name)
      if (entry === undefined) {
        recorder.unknownRemote++
        return Effect.fail(notFound(name))
      }
      if (entry.remote.kind === "stream") return invokeStream(entry, payload)
      return Effect.flatMap(Clock.currentTimeNanos, (t0) =>
        Effect.onExit(invokeEntry(entry, payload), (exit) => timed(name, exit, t0))
      )
    }

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
      const interrupted = Cause.isInterruptedOnly(cause)
      return new StartupFailed({
        context: failed?.key ?? "(start-up)",
        reason:
          failed === undefined
            ? interrupted
              ? "interrupted"
              : "failed"
            : failed.state === "timed-out"
              ? "timed-out"
              : "failed",
        detail: failed?.error ?? (interrupted ? "interrupted" : Cause.pretty(cause)),
        rolledBack,
        rollbackFailures
      })
    }

    /** One batcher per batched remote, running its batches with the entered contexts. */
    const makeBatchers = (contexts: Context.Context<Provides>) =>
      Effect.forEach(
        entries.values(),
        (entry) => {
          const remote = entry.remote
          if (remote.kind !== "unary" || remote.batch === undefined) return Effect.void
          const batch = remote.batch
          return Batcher.make<unknown, unknown, unknown, Provides>({
            maxSize: batchSize(batch),
            maxWait: batch.maxWait,
            concurrency: remote.concurrency,
            run: batch.handler as Batcher.Options<unknown, unknown, unknown, Provides>["run"]
          }).pipe(
            Effect.tap((batcher) => {
              entry.batcher = batcher
            }),
            Scope.extend(batchersScope),
            Effect.provide(contexts),
            Effect.locally(WorkerContext.currentRegistry, registry)
          )
        },
        { discard: true }
      )

    /**
     * The benchmark, by the kind of remote: elements per second for a stream remote; for `maxSize: "auto"`, the batch
     * sizes measured on the batch handler, then the batcher set to the size chosen; otherwise calls through the
     * worker's own call path (a fixed-size batched remote's go through its batcher).
     */
    const benchmark = (remote: Remote.Definition): Effect.Effect<Benchmark.Result, BenchmarkFailed> => {
      if (remote.kind === "stream") return Benchmark.runStream(remote, (p) => callStream(remote, p, true))
      const batch = remote.batch
      const entry = entries.get(remote.name)!
      if (batch?.maxSize === "auto" && entry.batcher !== undefined) {
        const batcher = entry.batcher
        return Benchmark.runBatchSizes(remote, (payloads) => runForked(batch.handler(payloads))).pipe(
          Effect.tap((result) =>
            Effect.suspend(() => {
              const size = result.batch?.size ?? 1
              entry.admission.setConcurrency(size * remote.concurrency)
              return batcher.setMaxSize(size)
            })
          )
        )
      }
      return Benchmark.run(remote, (p) => callUnary(remote, p, true))
    }

    const startup = Effect.gen(function* () {
      const built = yield* Layer.buildWithScope(deployment.layer, contextsScope).pipe(
        Effect.locally(WorkerContext.currentRegistry, registry),
        Effect.exit
      )
      let result: Exit.Exit<unknown, unknown> = built
      if (Exit.isSuccess(built)) {
        runtime = yield* Effect.runtime<Provides>().pipe(
          Effect.provide(built.value),
          Effect.locally(WorkerContext.currentRegistry, registry)
        )
        runFork = Runtime.runFork(runtime)
        yield* makeBatchers(built.value)
        if (options.benchmark !== false) {
          yield* setPhase("benchmarking")
          const bench = yield* benchmark(deployment.benchmarkRemote).pipe(Effect.exit)
          if (Exit.isSuccess(bench)) life.benchmark = bench.value
          result = bench
        }
      }
      if (Exit.isSuccess(result)) {
        registry.phase = "running"
        life.readyAt = yield* Clock.currentTimeMillis
        yield* setPhase("ready")
        yield* Deferred.succeed(ready, undefined)
      } else {
        // Roll back: exit every context that entered, handing it the failure.
        yield* Scope.close(batchersScope, Exit.void)
        yield* Scope.close(contextsScope, result)
        const error = startupFailed(result.cause)
        yield* setPhase("failed", error.message)
        yield* Deferred.fail(ready, error)
      }
    })
    const startupFiber = yield* Effect.forkIn(startup, outer)

    const exitFailures = () =>
      registry
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

    const shutdownNow = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.gen(function* () {
        const phase = life.phase
        if (phase === "ready" || phase === "starting" || phase === "benchmarking") {
          yield* setPhase("draining")
          // Interruptible: shutdown runs uninterruptibly, and a timeout cannot stop an uninterruptible wait.
          if (phase === "ready") yield* Effect.interruptible(load.whenIdle).pipe(Effect.timeoutOption(drainTimeout))
        }
        // Calls still running after the grace period are interrupted; their callers see the interruption.
        yield* Fiber.interruptAll([...inflight])
        // Then the batchers: a batch whose callers all left is interrupted already; none is left to start.
        yield* Scope.close(batchersScope, Exit.void)
        const startupFailedAlready = life.phase === "failed"
        if (!startupFailedAlready) yield* setPhase("stopping")
        yield* Fiber.interrupt(startupFiber)
        if (registry.phase === "running") registry.phase = "stopping"
        yield* Scope.close(contextsScope, exit)
        if (!(yield* Deferred.isDone(ready))) {
          // Shut down during start-up: what entered was rolled back.
          yield* Deferred.fail(ready, startupFailed(Cause.interrupt(FiberId.none)))
        }
        const failures = exitFailures()
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
        // A fiber of its own: whoever asked may be interrupted (a signal fiber closing with its scope) and stop
        // waiting, but the drain, the exits and the report still run to the end.
        return Effect.forkDaemon(Effect.intoDeferred(shutdownNow(exit), result)).pipe(
          Effect.zipRight(Deferred.await(result))
        )
      })
    yield* Effect.addFinalizer((exit) => Effect.ignoreLogged(shutdown(exit)))

    const reportNow = (): Report => ({
      deployment: deployment.name,
      phase: life.phase,
      startedAt,
      readyAt: life.readyAt,
      contexts: registry.snapshot(),
      benchmark: life.benchmark,
      error: life.lastError
    })

    const metricsNow = (): Metrics.Snapshot => ({
      deployment: deployment.name,
      phase: life.phase,
      remotes: [...recorder.remotes.values()].map((r) => {
        const entry = entries.get(r.name)
        return {
          ...r,
          running: entry?.admission.running ?? 0,
          queued: entry?.admission.queued ?? 0,
          stream: entry?.remote.kind === "stream"
        }
      }),
      unknownRemote: recorder.unknownRemote,
      contexts: registry.snapshot(),
      score: life.benchmark?.score,
      pendingWorkload: load.pending
    })

    const core: Core<Provides, Remotes> = {
      deployment: deployment as Deployment.Deployment<Provides, any, Remotes>,
      status,
      report: Effect.sync(reportNow),
      awaitReady: Deferred.await(ready),
      invoke,
      call: ((remote: Remote.Definition, payload: unknown) => call(remote, payload)) as unknown as Worker<
        Provides,
        Remotes
      >["call"],
      stats: Effect.sync(() =>
        [...entries.values()].map((e) => ({
          name: e.remote.name,
          running: e.admission.running,
          queued: e.admission.queued,
          concurrency: e.remote.concurrency,
          maxQueue: e.remote.maxQueue
        }))
      ),
      metrics: Effect.sync(metricsNow),
      shutdown: shutdown(Exit.void),
      shutdownWith: shutdown,
      registry,
      entry: (name) => entries.get(name),
      knownRemotes,
      admit,
      execute,
      start: startCall,
      workload: workloadFor,
      executeStream,
      fork,
      record: (name, outcome, seconds) => {
        if (name === undefined) recorder.unknownRemote++
        else recorder.record(name, outcome, seconds)
      },
      recordItems: (name, items) => recorder.items(name, items),
      phase: () => life.phase,
      statusNow: () => ({ phase: life.phase, since: life.since, error: life.lastError }),
      reportNow,
      metricsNow,
      unavailable: () => life.unavailable()
    }
    return core
  })
