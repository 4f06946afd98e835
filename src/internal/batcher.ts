/**
 * The dynamic batcher: gathers concurrent calls of one remote into batches and runs each batch once.
 *
 * A call waits in a FIFO queue. A batch starts when a concurrency slot is free and either `maxSize` calls wait (a full
 * batch runs at once) or the oldest waiting call has waited `maxWait`. While every slot is busy the queue keeps
 * growing, so a batch that timed out waiting for a slot still takes up to `maxSize` calls when one frees (as Triton's
 * dynamic batcher forms batches when an instance is free). `concurrency` counts batches, not calls.
 *
 * Each caller gets its own result (one `Exit` per item). A caller interrupted while its call still waits is taken out
 * of the queue (its payload never reaches the handler); a caller interrupted after its batch started stops waiting,
 * and the batch goes on for the others; when every caller of a running batch has left, the batch is interrupted.
 *
 * @internal
 */
import type { Array as Arr, Scope } from "effect"
import { Clock, Deferred, Duration, Effect, Either, Exit, Fiber, FiberId, FiberSet } from "effect"

/** Options of {@link make}. @internal */
export interface Options<A, B, E, R> {
  /** Most items in one batch (changeable later with `setMaxSize`, for a size the benchmark chooses). */
  readonly maxSize: number
  /** How long the oldest waiting item may wait for its batch to fill. */
  readonly maxWait: Duration.DurationInput
  /** Batches that run at once. */
  readonly concurrency: number
  /**
   * Runs one batch. Returns one Exit per item, in order; failing as a whole fails every item of the batch. Runs in
   * the runtime `make` was called in (so its requirements are those of the caller of `make`).
   */
  readonly run: (items: Arr.NonEmptyReadonlyArray<A>) => Effect.Effect<ReadonlyArray<Exit.Exit<B, E>>, E, R>
}

/** Per-call hooks, called synchronously on the batcher's path: keep them cheap and never throw. @internal */
export interface Hooks {
  /** The call's batch started: its handler runs from now. */
  readonly started?: ((batchSize: number) => void) | undefined
}

/** What the batcher holds now. @internal */
export interface Stats {
  /** Items waiting for a batch. */
  readonly queued: number
  /** Batches running. */
  readonly running: number
  /** Items in running batches (including those whose callers left). */
  readonly runningItems: number
  /** The size batches are cut at now. */
  readonly maxSize: number
}

/** @internal */
export interface Batcher<A, B, E> {
  /** Submit one item and wait for its own result. */
  readonly submit: (item: A, hooks?: Hooks) => Effect.Effect<B, E>
  readonly stats: Effect.Effect<Stats>
  /** Cut later batches at `n` items (for `maxSize: "auto"`, once the benchmark has chosen). */
  readonly setMaxSize: (n: number) => Effect.Effect<void>
}

interface Entry<A, B, E> {
  readonly item: A
  readonly deferred: Deferred.Deferred<B, E>
  readonly arrivedAt: number
  readonly hooks: Hooks | undefined
  state: "queued" | "running" | "left" | "done"
  batch: RunningBatch | undefined
}

interface RunningBatch {
  /** Callers still waiting for a result of this batch. */
  waiting: number
  fiber: Fiber.RuntimeFiber<void, never> | undefined
  /** Every caller left before the fiber was known: it interrupts itself on start. */
  abandoned: boolean
}

const interrupted = Exit.interrupt(FiberId.none)

/**
 * Normalise what a batch handler returned: one result per item, in order, each a value, an `Exit` or an `Either`.
 * Anything else (not an array, a different count) is a defect naming the remote and both counts, so every caller of
 * the batch learns of it instead of some waiting forever.
 *
 * @internal
 */
export const toExits = <A, E>(
  remote: string,
  expected: number,
  results: unknown
): Effect.Effect<ReadonlyArray<Exit.Exit<A, E>>> => {
  if (!Array.isArray(results)) {
    return Effect.die(
      new TypeError(`Remote "${remote}": the batch handler must return an array of results, got ${typeof results}`)
    )
  }
  if (results.length !== expected) {
    return Effect.die(
      new RangeError(
        `Remote "${remote}": the batch handler returned ${results.length} result(s) for ${expected} payload(s)`
      )
    )
  }
  return Effect.succeed(
    results.map((r): Exit.Exit<A, E> => {
      if (Exit.isExit(r)) return r as Exit.Exit<A, E>
      if (Either.isEither(r)) return Either.isRight(r) ? Exit.succeed(r.right as A) : Exit.fail(r.left as E)
      return Exit.succeed(r as A)
    })
  )
}

class BatcherImpl<A, B, E> {
  readonly queue: Array<Entry<A, B, E>> = []
  running = 0
  runningItems = 0
  closed = false
  private wake: Deferred.Deferred<void> | undefined

  constructor(
    public maxSize: number,
    readonly maxWaitMillis: number,
    readonly concurrency: number
  ) {}

  notify(): void {
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      Deferred.unsafeDone(wake, Exit.void)
    }
  }

  /** A fresh latch, set before the state is read: any change from here on completes it. */
  latch(): Deferred.Deferred<void> {
    this.wake = Deferred.unsafeMake<void>(FiberId.none)
    return this.wake
  }

  /** Take the next batch off the queue and mark its callers as started. */
  take(): { readonly entries: Array<Entry<A, B, E>>; readonly batch: RunningBatch } {
    const entries = this.queue.splice(0, this.maxSize)
    const batch: RunningBatch = { waiting: entries.length, fiber: undefined, abandoned: false }
    this.running++
    this.runningItems += entries.length
    for (const e of entries) {
      e.state = "running"
      e.batch = batch
      e.hooks?.started?.(entries.length)
    }
    return { entries, batch }
  }

  /** Hand each caller its result; callers that left get nothing (no one awaits their deferred). */
  deliver(entries: ReadonlyArray<Entry<A, B, E>>, exit: (i: number) => Exit.Exit<B, E>): void {
    entries.forEach((e, i) => {
      if (e.state === "running") {
        e.state = "done"
        Deferred.unsafeDone(e.deferred, exit(i))
      }
    })
  }

  finished(size: number): void {
    this.running--
    this.runningItems -= size
    this.notify()
  }

  /** The caller of `entry` was interrupted. Returns the batch fiber to interrupt when it was the last to leave. */
  leave(entry: Entry<A, B, E>): Fiber.RuntimeFiber<void, never> | undefined {
    if (entry.state === "queued") {
      const i = this.queue.indexOf(entry)
      if (i >= 0) this.queue.splice(i, 1)
      entry.state = "left"
      // The oldest waiting item may have changed: the dispatcher recomputes its deadline.
      this.notify()
      return undefined
    }
    if (entry.state === "running" && entry.batch !== undefined) {
      entry.state = "left"
      const batch = entry.batch
      batch.waiting--
      if (batch.waiting === 0) {
        if (batch.fiber === undefined) batch.abandoned = true
        return batch.fiber
      }
    }
    return undefined
  }

  stats(): Stats {
    return { queued: this.queue.length, running: this.running, runningItems: this.runningItems, maxSize: this.maxSize }
  }
}

const checkSize = (what: string, n: number): void => {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Batcher: ${what} must be a positive integer, got ${n}`)
}

/**
 * Make a batcher that runs batches in the scope it is made in: closing the scope interrupts running batches and
 * interrupts every caller still waiting.
 *
 * @internal
 */
export const make = <A, B, E, R>(
  options: Options<A, B, E, R>
): Effect.Effect<Batcher<A, B, E>, never, Scope.Scope | R> =>
  Effect.gen(function* () {
    checkSize("maxSize", options.maxSize)
    checkSize("concurrency", options.concurrency)
    const self = new BatcherImpl<A, B, E>(
      options.maxSize,
      Duration.toMillis(Duration.decode(options.maxWait)),
      options.concurrency
    )
    const runFork = yield* FiberSet.makeRuntime<R, void, never>()

    const runBatch = (entries: Array<Entry<A, B, E>>, batch: RunningBatch): Effect.Effect<void, never, R> => {
      const items = entries.map((e) => e.item) as unknown as Arr.NonEmptyReadonlyArray<A>
      return Effect.suspend(() => (batch.abandoned ? Effect.interrupt : options.run(items))).pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.sync(() => {
            if (Exit.isFailure(exit)) return self.deliver(entries, () => exit as Exit.Exit<never, E>)
            const results = exit.value
            if (results.length !== entries.length) {
              const defect = Exit.die(
                new RangeError(`Batcher: a batch of ${entries.length} item(s) gave ${results.length} result(s)`)
              )
              return self.deliver(entries, () => defect)
            }
            self.deliver(entries, (i) => results[i]!)
          })
        ),
        Effect.onInterrupt(() => Effect.sync(() => self.deliver(entries, () => interrupted))),
        Effect.ensuring(Effect.sync(() => self.finished(entries.length)))
      )
    }

    const dispatch = Effect.sync(() => {
      const { batch, entries } = self.take()
      batch.fiber = runFork(runBatch(entries, batch))
    })

    const loop: Effect.Effect<never> = Effect.gen(function* () {
      while (true) {
        const wake = self.latch()
        if (self.queue.length === 0 || self.running >= self.concurrency) {
          yield* Deferred.await(wake)
          continue
        }
        if (self.queue.length >= self.maxSize) {
          yield* dispatch
          continue
        }
        const now = yield* Clock.currentTimeMillis
        const due = self.queue[0]!.arrivedAt + self.maxWaitMillis
        if (now >= due) {
          yield* dispatch
          continue
        }
        yield* Effect.timeoutOption(Deferred.await(wake), Duration.millis(due - now))
      }
    })
    yield* Effect.forkScoped(loop)

    // Runs before the fiber set's own finalizer (added earlier, so run later): the queue is emptied first, so no
    // caller waits for a batch that will never start.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        self.closed = true
        for (const e of self.queue.splice(0)) {
          e.state = "done"
          Deferred.unsafeDone(e.deferred, interrupted)
        }
      })
    )

    const submit = (item: A, hooks?: Hooks): Effect.Effect<B, E> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          if (self.closed) return Effect.interrupt
          const entry: Entry<A, B, E> = {
            item,
            deferred: Deferred.unsafeMake<B, E>(FiberId.none),
            arrivedAt: now,
            hooks,
            state: "queued",
            batch: undefined
          }
          self.queue.push(entry)
          self.notify()
          return restore(Deferred.await(entry.deferred)).pipe(
            Effect.onInterrupt(() =>
              Effect.suspend(() => {
                const fiber = self.leave(entry)
                return fiber === undefined ? Effect.void : Fiber.interrupt(fiber)
              })
            )
          )
        })
      )

    return {
      submit,
      stats: Effect.sync(() => self.stats()),
      setMaxSize: (n: number) =>
        Effect.sync(() => {
          checkSize("maxSize", n)
          self.maxSize = n
          self.notify()
        })
    }
  })
