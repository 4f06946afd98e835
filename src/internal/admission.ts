import { Duration, Effect } from "effect"

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
 * from reading any socket until all of them are done: `/health` waits, refusals wait. So calls start synchronously only
 * within a slice of {@link SLICE_MILLIS} from the first start of the current event-loop turn; past it, each further
 * start waits for a turn of its own (one per turn, in arrival order), and between turns Node polls its sockets.
 * Trivial calls fit by the thousand in a slice, so the fast path is unchanged; a 200 ms call delays `/health` by at
 * most its own duration.
 */
export const SLICE_MILLIS = 10

const turn = {
  sliceStart: undefined as number | undefined,
  scheduled: false,
  pending: [] as Array<() => void>
}

const scheduleTurn = (): void => {
  if (turn.scheduled) return
  turn.scheduled = true
  setImmediate(nextTurn)
}

// Runs at the end of the turn a slice was opened in (a check-phase callback). A deferred call starts on the turn after
// (its own setImmediate, queued now, runs after the next poll for I/O), not in this one.
const nextTurn = (): void => {
  turn.scheduled = false
  turn.sliceStart = undefined
  if (turn.pending.length > 0) setImmediate(startDeferred)
}

const startDeferred = (): void => {
  const next = turn.pending.shift()
  if (next === undefined) return
  turn.sliceStart = performance.now()
  scheduleTurn()
  next()
}

/** Whether a call may start now, in this turn's slice; it opens the slice if none is open. */
const mayStartNow = (): boolean => {
  const now = performance.now()
  if (turn.sliceStart === undefined) {
    turn.sliceStart = now
    scheduleTurn()
    return turn.pending.length === 0
  }
  return turn.pending.length === 0 && now - turn.sliceStart < SLICE_MILLIS
}

/** Start `f` on a later turn of its own, after those already waiting. */
const deferToTurn = (f: () => void): void => {
  turn.pending.push(f)
  // A slice is open: its end starts the next deferred call. None is: start one on the next turn.
  if (turn.sliceStart === undefined && turn.pending.length === 1) setImmediate(startDeferred)
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
    readonly concurrency: number,
    readonly maxQueue: number
  ) {}

  /** Whether one more call fits (running plus queued within `concurrency + maxQueue`). */
  hasRoom(): boolean {
    return this.running + this.queued < this.concurrency + this.maxQueue
  }

  /** Whether a call admitted now would have to wait for a slot. */
  wouldWait(): boolean {
    return this.running + this.queued >= this.concurrency
  }

  /**
   * Run `effect` in a slot: at once when one is free, else after the calls ahead of it. `onStart` runs when the call
   * starts. Interrupting a waiting call removes it from the queue; the slot is released however the call ends. Room
   * is the caller's to check first ({@link hasRoom}): this never refuses.
   */
  run<A, E, R>(effect: Effect.Effect<A, E, R>, onStart?: () => void): Effect.Effect<A, E, R> {
    return Effect.suspend(() => {
      const ticket: Ticket = { state: "waiting", resume: undefined }
      const release = Effect.sync(() => this.done(ticket))
      const start = Effect.suspend(() => {
        ticket.state = "running"
        onStart?.()
        return effect
      })
      if (this.running < this.concurrency && this.queued === 0) {
        this.running++
        if (mayStartNow()) return Effect.ensuring(start, release)
        // The slot is ours, but the event loop is owed a turn first.
        ticket.state = "granted"
        const wait = Effect.async<void>((resume) => {
          ticket.resume = resume
          deferToTurn(() => this.resumeGranted(ticket))
        })
        return Effect.ensuring(Effect.zipRight(wait, start), release)
      }
      this.queued++
      this.waiters.push(ticket)
      const wait = Effect.async<void>((resume) => {
        ticket.resume = resume
      })
      return Effect.ensuring(Effect.zipRight(wait, start), release)
    })
  }

  private resumeGranted(ticket: Ticket): void {
    // Interrupted between the hand-off and now: `done` already gave the slot back.
    if (ticket.state === "granted") ticket.resume?.(Effect.void)
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
