import { Clock, Duration, Effect } from "effect"

/** Why a body stopped being waited for: it ran past the body timeout, or the server is closing. */
export type Expiry = "timeout" | "closing"

/** One request whose body is still arriving. */
export interface Pending {
  readonly since: number
  readonly expire: (why: Expiry) => void
}

/**
 * Requests whose body is still arriving, each with the time its headers arrived. One sweep on the worker's `Clock`
 * expires those older than the body timeout, however steadily their bytes arrive: no timer per request (a call's fast
 * path adds a set entry, nothing more), and the time is Effect's (a `TestClock` drives it in tests).
 */
export class BodyDeadlines {
  private readonly pending = new Set<Pending>()
  /** Bodies refused for arriving too slowly, since the start. */
  timedOut = 0

  constructor(
    readonly clock: Clock.Clock,
    readonly timeout: Duration.Duration
  ) {}

  /** Requests whose body is still arriving. */
  get size(): number {
    return this.pending.size
  }

  /** Start waiting for a body; `expire` runs at most once, when it is too late. */
  add(expire: (why: Expiry) => void): Pending {
    const pending = { since: this.clock.unsafeCurrentTimeMillis(), expire }
    this.pending.add(pending)
    return pending
  }

  /** The body arrived (or the request ended otherwise). */
  remove(pending: Pending): void {
    this.pending.delete(pending)
  }

  /** Expire every body older than the timeout. */
  sweep(): void {
    const limit = this.clock.unsafeCurrentTimeMillis() - Duration.toMillis(this.timeout)
    for (const p of this.pending) {
      if (p.since > limit) continue
      this.pending.delete(p)
      this.timedOut++
      p.expire("timeout")
    }
  }

  /** Stop waiting for every body (the server is closing). */
  expireAll(): void {
    const all = [...this.pending]
    this.pending.clear()
    for (const p of all) p.expire("closing")
  }

  /** How often the sweep runs: a tenth of the timeout, from 10 ms to a second. */
  get tick(): Duration.Duration {
    return Duration.millis(Math.min(1000, Math.max(10, Math.floor(Duration.toMillis(this.timeout) / 10))))
  }

  /** The sweep, forever (fork it for the server's life). */
  get run(): Effect.Effect<never> {
    return Effect.forever(
      Effect.zipRight(
        Effect.sleep(this.tick),
        Effect.sync(() => this.sweep())
      )
    )
  }
}
