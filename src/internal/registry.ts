import { Cause, Exit, Option } from "effect"
import { ContextNotFound, ContextTimeout } from "../WorkerError.js"

/** Where a context is in its lifecycle. */
export type ContextState =
  | "pending"
  | "entering"
  | "entered"
  | "failed"
  | "timed-out"
  | "interrupted"
  | "exiting"
  | "exited"
  | "exit-failed"
  | "exit-timed-out"
  | "rolled-back"
  | "rollback-failed"

/** One context's line in the start-up / shutdown report. Times are epoch milliseconds from the Effect `Clock`. */
export interface ContextRecord {
  readonly key: string
  readonly dependsOn: ReadonlyArray<string>
  state: ContextState
  enterStartedAt?: number
  enterEndedAt?: number
  enterMillis?: number
  exitStartedAt?: number
  exitEndedAt?: number
  exitMillis?: number
  /** Why it failed, timed out or was interrupted (enter or exit), as a one-line summary. */
  error?: string
  /** Free-form facts the context recorded while entering (e.g. which backend it chose). */
  notes: Array<string>
}

export type RegistryPhase = "starting" | "running" | "stopping"

const summarize = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  const err = Option.isSome(failure) ? failure.value : Cause.squash(cause)
  if (err instanceof Error) return err.message || err.name
  if (typeof err === "object" && err !== null && "_tag" in err) return String((err as { _tag: unknown })._tag)
  return String(err)
}

/**
 * The registry of a worker's contexts: which are registered, their state and entered service. Updated synchronously
 * (the lookup is on every call's path and the Promise facade's `getContext` is synchronous).
 */
export class Registry {
  phase: RegistryPhase
  private readonly records = new Map<string, ContextRecord>()
  private readonly services = new Map<string, unknown>()
  private readonly listeners = new Set<() => void>()

  constructor(keys: Iterable<readonly [string, ReadonlyArray<string>]>, phase: RegistryPhase = "starting") {
    this.phase = phase
    for (const [key, dependsOn] of keys) this.records.set(key, { key, dependsOn, state: "pending", notes: [] })
  }

  /** Subscribe to changes of any record; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private changed(): void {
    for (const l of this.listeners) l()
  }

  private record(key: string): ContextRecord {
    let r = this.records.get(key)
    if (r === undefined) {
      // A context reached only through a layer composed by hand is registered when it starts entering.
      r = { key, dependsOn: [], state: "pending", notes: [] }
      this.records.set(key, r)
    }
    return r
  }

  lookup(key: string): Exit.Exit<unknown, ContextNotFound> {
    const r = this.records.get(key)
    if (r === undefined) return Exit.fail(new ContextNotFound({ key, reason: "not-registered" }))
    if (r.state !== "entered" || !this.services.has(key)) {
      return Exit.fail(new ContextNotFound({ key, reason: "not-entered", state: r.state }))
    }
    return Exit.succeed(this.services.get(key))
  }

  entering(key: string, dependsOn: ReadonlyArray<string>, now: number): void {
    const r = this.record(key)
    if (r.dependsOn.length === 0 && dependsOn.length > 0)
      (r as { dependsOn: ReadonlyArray<string> }).dependsOn = dependsOn
    r.state = "entering"
    r.enterStartedAt = now
    delete r.enterEndedAt
    delete r.enterMillis
    delete r.exitStartedAt
    delete r.exitEndedAt
    delete r.exitMillis
    delete r.error
    r.notes = []
    this.changed()
  }

  note(key: string, note: string): void {
    this.record(key).notes.push(note)
    this.changed()
  }

  entered(key: string, exit: Exit.Exit<unknown, unknown>, now: number): void {
    const r = this.record(key)
    r.enterEndedAt = now
    r.enterMillis = now - (r.enterStartedAt ?? now)
    if (Exit.isSuccess(exit)) {
      r.state = "entered"
      this.services.set(key, exit.value)
    } else if (Cause.isInterruptedOnly(exit.cause)) {
      r.state = "interrupted"
      r.error = "interrupted while entering"
    } else {
      const timedOut = Option.exists(Cause.failureOption(exit.cause), (e) => e instanceof ContextTimeout)
      r.state = timedOut ? "timed-out" : "failed"
      r.error = summarize(exit.cause)
    }
    this.changed()
  }

  exiting(key: string, now: number): boolean {
    const r = this.record(key)
    const rollback = this.phase === "starting"
    r.state = "exiting"
    r.exitStartedAt = now
    this.services.delete(key)
    this.changed()
    return rollback
  }

  exited(key: string, exit: Exit.Exit<unknown, unknown>, rollback: boolean, now: number): void {
    const r = this.record(key)
    r.exitEndedAt = now
    r.exitMillis = now - (r.exitStartedAt ?? now)
    if (Exit.isSuccess(exit)) {
      r.state = rollback ? "rolled-back" : "exited"
    } else {
      const timedOut = Option.exists(Cause.failureOption(exit.cause), (e) => e instanceof ContextTimeout)
      r.state = rollback ? "rollback-failed" : timedOut ? "exit-timed-out" : "exit-failed"
      r.error = summarize(exit.cause)
    }
    this.changed()
  }

  /**
   * Replaces the records whose key starts with `prefix` by `records`, placed right after the record `after`: the
   * contexts of another thread, mirrored from that thread's registry (a threaded context's threads, listed under it).
   * A mirrored record has no service here: looking it up answers `not-entered`.
   */
  mirror(prefix: string, after: string, records: ReadonlyArray<ContextRecord>): void {
    const kept = [...this.records.values()].filter((r) => !r.key.startsWith(prefix))
    const at = kept.findIndex((r) => r.key === after) + 1 || kept.length
    kept.splice(at, 0, ...records.map((r) => ({ ...r, notes: [...r.notes] })))
    this.records.clear()
    for (const r of kept) this.records.set(r.key, r)
    for (const key of [...this.services.keys()]) if (key.startsWith(prefix)) this.services.delete(key)
    this.changed()
  }

  /** A snapshot of every record, in registration order. */
  snapshot(): ReadonlyArray<ContextRecord> {
    return Array.from(this.records.values(), (r) => ({ ...r, notes: [...r.notes] }))
  }
}

/**
 * The registry of the worker most recently started for each deployment: how code that runs outside any worker fiber
 * (the Promise facade's synchronous `getContext`, whoever started the worker) finds its contexts.
 */
export const activeRegistries = new WeakMap<object, Registry>()

/** The registry of the worker most recently started in this process, whatever its deployment. */
export const latest: { registry: Registry | undefined } = { registry: undefined }
