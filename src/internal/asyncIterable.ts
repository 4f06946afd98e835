/**
 * An Effect `Stream` as an `AsyncIterable`: the Promise edge of stream remotes (`App.asyncIterable`, the Promise
 * client, the App facade). With App.ts and promiseClient.ts, the only place in src that runs effects for Promise
 * callers; kept apart from App.ts so that a client imports no server code.
 */
import { Cause, Chunk, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import { RemoteFailure } from "../WorkerError.js"

/** The error a Promise caller sees: the error value itself (the remote's own, not our wrapper), not a FiberFailure. */
const squash = (cause: Cause.Cause<unknown>): unknown => {
  const error = Cause.squash(cause)
  return error instanceof RemoteFailure ? error.error : error
}

/** @internal */
export const make = <A, E>(stream: Stream.Stream<A, E>): AsyncIterable<A> => ({
  [Symbol.asyncIterator]: (): AsyncIterator<A> => new StreamIterator(stream)
})

class StreamIterator<A, E> implements AsyncIterator<A> {
  private readonly scope = Effect.runSync(Scope.make())
  private pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>> | undefined
  private pulling: Fiber.RuntimeFiber<Chunk.Chunk<A>, Option.Option<E>> | undefined
  private buffer: ReadonlyArray<A> = []
  private index = 0
  private done = false
  // Calls are served one after the other, even when a caller does not await each `next()` before the next.
  private last: Promise<unknown> = Promise.resolve()

  constructor(private readonly stream: Stream.Stream<A, E>) {}

  next(): Promise<IteratorResult<A>> {
    return this.serial(() => this.advance())
  }

  return(): Promise<IteratorResult<A>> {
    // Not serialised behind a pending `next()`: that one's pull is interrupted, and it reports the end.
    this.done = true
    this.buffer = []
    const pulling = this.pulling
    return Effect.runPromise(
      Effect.zipRight(
        pulling === undefined ? Effect.void : Fiber.interrupt(pulling),
        Scope.close(this.scope, Exit.void)
      )
    ).then(() => ({ done: true, value: undefined }))
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.last.then(f, f)
    this.last = run.catch(() => undefined)
    return run
  }

  private async advance(): Promise<IteratorResult<A>> {
    for (;;) {
      if (this.index < this.buffer.length) return { done: false, value: this.buffer[this.index++]! }
      if (this.done) return { done: true, value: undefined }
      this.pull ??= await Effect.runPromise(Scope.extend(Stream.toPull(this.stream), this.scope))
      if (this.done) return { done: true, value: undefined }
      const fiber = Effect.runFork(this.pull)
      this.pulling = fiber
      const exit = await Effect.runPromise(Fiber.await(fiber))
      this.pulling = undefined
      if (this.done) return { done: true, value: undefined }
      if (Exit.isSuccess(exit)) {
        this.buffer = Chunk.toReadonlyArray(exit.value)
        this.index = 0
        continue
      }
      this.done = true
      const failure = Cause.flipCauseOption(exit.cause)
      await Effect.runPromise(
        Scope.close(this.scope, Option.isNone(failure) ? Exit.void : Exit.failCause(failure.value))
      )
      if (Option.isNone(failure)) return { done: true, value: undefined }
      throw squash(failure.value)
    }
  }
}
