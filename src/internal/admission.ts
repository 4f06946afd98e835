import { Duration, Effect } from "effect"
import type { Scope } from "effect"

/**
 * A call's place at one remote: it waits for a slot, runs, and is done. `granted` means a slot was handed to it but its
 * fiber has not resumed yet (it waits for an event-loop turn of its own, see {@link SLICE_MILLIS}).
 */
type TicketState = "waiting" | "granted" | "running" | "done"

interface Ticket {
  state: TicketState
  resume: ((effect: Effect.Effect<void>) => void) | undefined
}

/**
 * Time slicing of the event loop between calls. A synchronous handler blocks the loop for its whole duration, and
 * calls started back to back (a burst read in one poll, or queued calls released one after another) would keep Node
 * from reading any socket until all of them are done: `/health` waits, refusals wait. So each event-loop turn has a
 * budget of {@link SLICE_MILLIS} of call time (measured from each call's start to its end, for the calls that end in
 * the turn they started: synchronous work). Within it calls start at once; past it, further starts wait for the next
 * turn, after Node has polled its sockets. Trivial calls fit by the thousand in a slice, so the fast path is unchanged;
 * a 200 ms call delays `/health` by at most its own duration. Measuring the calls, not the clock, keeps a busy machine
 * (the process descheduled between two calls) from being mistaken for a busy event loop.
 */
export const SLICE_MILLIS = 10

const turn = {
  /** Which turn this is: incremented at each boundary. */
  id: 0,
  /** Milliseconds of calls that started and ended in this turn. */
  busy: 0,
  /** A boundary is scheduled (a check-phase callback ends the turn). */
  open: false,
  /**
   * The previous turn spent its budget: until the poll after it is done, no call starts at once. What arrived while
   * the loop was blocked is read in that one poll, and a call read early in it would otherwise block the rest of it
   * (a `/health` probe behind a burst of calls would wait for two calls instead of one).
   */
  afterLong: false,
  /** Deferred starts, in arrival order; each returns whether it started a call (false: it was interrupted). */
  pending: [] as Array<() => boolean>
}

const openTurn = (): void => {
  if (turn.open) return
  turn.open = true
  setImmediate(closeTurn)
}

const closeTurn = (): void => {
  turn.open = false
  if (turn.busy >= SLICE_MILLIS && !turn.afterLong) {
    turn.afterLong = true
    // Queued now, it runs after the next poll, and before the deferred starts that poll queues.
    setImmediate(() => (turn.afterLong = false))
  }
  turn.busy = 0
  turn.id++
  // Deferred calls start on the next turn (their setImmediate, queued now, runs after Node polls for I/O).
  if (turn.pending.length > 0) setImmediate(startPending)
}

/** Start deferred calls, one at a time: the end of each (`finished`) starts the next while the budget lasts. */
const startPending = (): void => {
  while (turn.pending.length > 0 && turn.busy < SLICE_MILLIS) {
    openTurn()
    if (turn.pending.shift()!()) return
  }
}

/** Whether a call may start now, within this turn's budget, with no deferred call ahead of it. */
const mayStartNow = (): boolean => {
  openTurn()
  return turn.pending.length === 0 && turn.busy < SLICE_MILLIS && !turn.afterLong
}

/** Count a call that ran from `startedAt` in turn `id`; start the next deferred one if the budget allows. */
const finished = (id: number, startedAt: number): void => {
  if (id === turn.id) turn.busy += performance.now() - startedAt
  if (turn.pending.length > 0 && turn.busy < SLICE_MILLIS) startPending()
}

/** Start a call on a later turn, after the deferred calls already waiting. */
const deferToTurn = (start: () => boolean): void => {
  turn.pending.push(start)
  openTurn()
}

/**
 * Admission of one remote: at most `concurrency` calls run at once and at most `maxQueue` more wait, in arrival order.
 *
 * Plain counters instead of an Effect `Semaphore`: on the uncontended path a call takes its slot synchronously, with
 * no fiber suspension (a semaphore round trip per call halved a trivial remote's throughput). Starts are time-sliced
 * ({@link SLICE_MILLIS}) so that the event loop answers other requests between long synchronous calls.
 */
export class Admission {
  /** Calls holding a slot (running, or handed one and about to start). */
  running = 0
  /** Calls waiting for a slot. */
  queued = 0
  private readonly waiters: Array<Ticket> = []
  private head = 0

  constructor(
    private slots: number,
    readonly maxQueue: number
  ) {}

  /** Calls that run at once. */
  get concurrency(): number {
    return this.slots
  }

  /** Change how many calls run at once (a batched remote's, once the benchmark has chosen its batch size). */
  setConcurrency(n: number): void {
    this.slots = n
    this.grantNext()
  }

  /** Whether one more call fits (running plus queued within `concurrency + maxQueue`). */
  hasRoom(): boolean {
    return this.running + this.queued < this.concurrency + this.maxQueue
  }

  /** Whether a call admitted now would have to wait for a slot. */
  wouldWait(): boolean {
    return this.running + this.queued >= this.concurrency
  }

  /**
   * Take a slot now, synchronously, when one is free, no call waits for one, and the turn's budget allows: the fast
   * path of a transport, which then runs the call without any Effect around it. `release` it when the call ends.
   * `undefined` means the call must go through {@link run}.
   */
  tryTake(): Slot | undefined {
    if (this.running >= this.concurrency || this.queued > 0 || !mayStartNow()) return undefined
    this.running++
    return new Slot(this)
  }

  /** @internal */
  released(slot: Slot): void {
    finished(slot.startedIn, slot.startedAt)
    this.running--
    this.grantNext()
  }

  /**
   * Run `effect` in a slot: at once when one is free, else after the calls ahead of it. `onStart` runs when the call
   * starts. Interrupting a waiting call removes it from the queue; the slot is released however the call ends. Room
   * is the caller's to check first ({@link hasRoom}): this never refuses.
   */
  run<A, E, R>(effect: Effect.Effect<A, E, R>, onStart?: () => void): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      const ticket: Ticket = { state: "waiting", resume: undefined }
      let startedAt = 0
      let startedIn = -1
      const release = Effect.sync(() => {
        if (ticket.state === "running") finished(startedIn, startedAt)
        this.done(ticket)
      })
      const start = Effect.suspend(() => {
        ticket.state = "running"
        startedAt = performance.now()
        startedIn = turn.id
        onStart?.()
        return effect
      })
      const wait = this.enter(ticket)
      return Effect.ensuring(wait === undefined ? start : Effect.zipRight(wait, start), release)
    })
  }

  /**
   * Hold a slot for the life of the current scope (a stream holds its slot until it ends): waits as {@link run} does,
   * `onStart` when the slot is taken, and the slot is given back when the scope closes. Interrupting the wait removes
   * the call from the queue.
   */
  hold(onStart?: () => void): Effect.Effect<void, never, Scope.Scope> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const ticket: Ticket = { state: "waiting", resume: undefined }
        let startedAt = 0
        let startedIn = -1
        const wait = this.enter(ticket)
        const start = Effect.sync(() => {
          ticket.state = "running"
          startedAt = performance.now()
          startedIn = turn.id
          onStart?.()
        })
        const release = Effect.sync(() => {
          // A stream that ends in the turn it started (a synchronous one) counts against the turn's budget.
          if (ticket.state === "running") finished(startedIn, startedAt)
          this.done(ticket)
        })
        return Effect.zipRight(
          Effect.addFinalizer(() => release),
          wait === undefined ? start : Effect.zipRight(restore(wait), start)
        )
      })
    )
  }

  /**
   * Count a call that something else schedules (a batcher gathers calls into batches and runs as many as it allows):
   * it is queued until `start()`, then running, until `done()`. Nothing waits here; room is checked by the caller.
   */
  track(): { readonly start: () => void; readonly done: () => void } {
    let state: "queued" | "running" | "done" = "queued"
    this.queued++
    return {
      start: () => {
        if (state !== "queued") return
        state = "running"
        this.queued--
        this.running++
      },
      done: () => {
        if (state === "queued") this.queued--
        else if (state === "running") this.running--
        state = "done"
      }
    }
  }

  /**
   * Take a slot for `ticket` now, or queue it: `undefined` when the call may start at once, else the wait for its
   * turn (a slot handed over on a later event-loop turn, or one freed by a call ahead of it).
   */
  private enter(ticket: Ticket): Effect.Effect<void> | undefined {
    if (this.running < this.concurrency && this.queued === 0) {
      this.running++
      if (mayStartNow()) return undefined
      // The slot is ours, but the event loop is owed a turn first.
      ticket.state = "granted"
      return Effect.async<void>((resume) => {
        ticket.resume = resume
        deferToTurn(() => this.resumeGranted(ticket))
      })
    }
    this.queued++
    this.waiters.push(ticket)
    return Effect.async<void>((resume) => {
      ticket.resume = resume
    })
  }

  private resumeGranted(ticket: Ticket): boolean {
    // Interrupted between the hand-off and now: `done` already gave the slot back.
    if (ticket.state !== "granted" || ticket.resume === undefined) return false
    ticket.resume(Effect.void)
    return true
  }

  private done(ticket: Ticket): void {
    const state = ticket.state
    ticket.state = "done"
    if (state === "waiting") {
      // Left the queue before its turn (interrupted): it stays in the array and is skipped when reached.
      this.queued--
      return
    }
    if (state === "done") return
    this.running--
    this.grantNext()
  }

  private grantNext(): void {
    while (this.head < this.waiters.length && this.running < this.concurrency) {
      const next = this.waiters[this.head]!
      this.waiters[this.head] = undefined as unknown as Ticket
      this.head++
      if (next.state !== "waiting") continue
      this.queued--
      this.running++
      next.state = "granted"
      deferToTurn(() => this.resumeGranted(next))
    }
    if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head)
      this.head = 0
    }
  }
}

/** A slot taken synchronously by {@link Admission.tryTake}. */
export class Slot {
  readonly startedAt = performance.now()
  readonly startedIn = turn.id
  private done = false
  constructor(private readonly admission: Admission) {}

  /** Give the slot back (once; later calls do nothing). */
  release(): void {
    if (this.done) return
    this.done = true
    this.admission.released(this)
  }
}

/**
 * The worker's pending work: the workload units of every admitted call not yet finished. With the benchmark score
 * (workload per second) it estimates how long a new call would wait, as the reference's engine does.
 */
export class Load {
  pending = 0
  /** Calls admitted and not finished, across remotes (what a drain waits for). */
  active = 0
  private idle: Array<() => void> = []

  /** Seconds until the pending work is done at `score` workload per second; undefined without a score. */
  waitSeconds(score: number | undefined): number | undefined {
    return score === undefined || score <= 0 ? undefined : this.pending / score
  }

  /** Whether a call that would wait exceeds `maxQueueTime` at `score` (never without a score or a limit). */
  exceeds(score: number | undefined, maxQueueTime: Duration.Duration | undefined): boolean {
    if (maxQueueTime === undefined) return false
    const wait = this.waitSeconds(score)
    return wait !== undefined && wait * 1000 > Duration.toMillis(maxQueueTime)
  }

  add(workload: number): void {
    this.pending += workload
    this.active++
  }

  remove(workload: number): void {
    this.pending -= workload
    this.active--
    if (this.active === 0 && this.idle.length > 0) {
      const waiting = this.idle
      this.idle = []
      for (const f of waiting) f()
    }
  }

  /** Completes when no admitted call is left (at once if none is). */
  readonly whenIdle: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.active === 0) return resume(Effect.void)
    const f = () => resume(Effect.void)
    this.idle.push(f)
    return Effect.sync(() => {
      this.idle = this.idle.filter((g) => g !== f)
    })
  })
}
