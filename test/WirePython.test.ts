// Errors as the reference's Python client sees them: every body here is decoded by test/fixtures/reference_client.py,
// which follows that client's rules (module resolution, cls.__new__, setattr, raise).
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as Wire from "../src/Wire.js"
import {
  CallFailed,
  CallTimeout,
  ContextNotFound,
  FieldIssue,
  PayloadInvalid,
  SessionGone,
  Unauthorized,
  WireArgumentError,
  WireEncodeError,
  WorkerUnavailable
} from "../src/WorkerError.js"
import * as Deployment from "../src/Deployment.js"
import * as Remote from "../src/Remote.js"
import * as Worker from "../src/Worker.js"
import { hasPython, referenceClient } from "./fixtures/python.js"
import { divide, request } from "./fixtures/serving.js"

class QuotaExceeded extends Error {
  override name = "QuotaExceeded"
  constructor(readonly limit: number) {
    super(`over the quota of ${limit}`)
  }
}

/** A declared error with a boolean, bytes and a nested struct: each must survive both clients. */
class Overloaded extends Schema.TaggedError<Overloaded>()(
  "Overloaded",
  {
    retryable: Schema.Boolean,
    load: Schema.Struct({ queued: Schema.Number, paused: Schema.Boolean }),
    trace: Schema.Uint8ArrayFromSelf
  },
  { [Wire.PythonException]: "ConnectionRefusedError" }
) {
  override get message(): string {
    return `overloaded: ${this.load.queued} queued`
  }
}

class Plain extends Schema.TaggedError<Plain>()("Plain", { flag: Schema.Union(Schema.Boolean, Schema.Number) }) {}

const errBody = (error: unknown) =>
  Effect.map(Wire.err(error), (body) => JSON.parse(JSON.stringify(body.result)) as { err: unknown })

const enoent = (): Error => {
  try {
    fs.readFileSync("/nonexistent/effect-deployments-test")
  } catch (e) {
    return e as Error
  }
  throw new Error("the file exists")
}

describe.skipIf(!hasPython)("errors as the reference's Python client raises them", () => {
  it.effect("each kind of error is a built-in exception carrying its message and fields", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [new ContextNotFound({ key: "Model", reason: "not-entered", state: "entering" }), "KeyError"],
        [
          new PayloadInvalid({ remote: "f", issues: [new FieldIssue({ path: ["x"], message: "Expected number" })] }),
          "TypeError"
        ],
        [new WireArgumentError({ reason: "UnknownKeyword", field: "y", message: "got y" }), "TypeError"],
        [new CallTimeout({ remote: "f", timeoutMillis: 50 }), "TimeoutError"],
        [new CallFailed({ remote: "f", reason: "encode", detail: "NaN at $.score" }), "TypeError"],
        [new CallFailed({ remote: "f", reason: "defect", detail: "internal error", id: "x1" }), "RuntimeError"],
        [new WireEncodeError({ reason: "NonFiniteNumber", path: "$", message: "NaN" }), "ValueError"],
        [new WorkerUnavailable({ reason: "queue-full" }), "RuntimeError"],
        [new Unauthorized({ reason: "invalid", detail: "bad signature" }), "PermissionError"],
        [new SessionGone({ sessionId: "s1", reason: "expired" }), "RuntimeError"],
        [new TypeError("bad input"), "TypeError"],
        [new RangeError("too big"), "ValueError"],
        [new SyntaxError("Unexpected token"), "ValueError"],
        [new QuotaExceeded(3), "Exception"],
        [enoent(), "FileNotFoundError"],
        ["just a string", "Exception"],
        // What the worker sends for a declared error: its Schema-encoded fields, with the message added.
        [
          { _tag: "DivideByZero", reason: "zero-divisor", dividend: 7, message: "cannot divide 7 by zero" },
          "Exception"
        ],
        [{ _tag: "ValueError", message: "a declared error named as Python's" }, "ValueError"]
      ]
      const outcomes = yield* referenceClient(yield* Effect.forEach(cases, ([error]) => errBody(error)))
      outcomes.forEach((outcome, i) => {
        const [error, expected] = cases[i]!
        const message =
          error instanceof Error ? error.message : typeof error === "string" ? error : (error as any).message
        expect({ i, raised: outcome.raised, module: outcome.module }).toEqual({
          i,
          raised: expected,
          module: "builtins"
        })
        expect(outcome.args).toEqual([message])
        // str(KeyError) is the repr of its argument, as in Python.
        expect(outcome.str).toBe(expected === "KeyError" ? `'${message.replaceAll("'", "\\'")}'` : message)
        if (typeof error === "object" && error !== null && "_tag" in error) {
          expect(outcome.attrs?.["_tag"]).toBe((error as { _tag: string })._tag)
        }
      })
      // Fields are attributes: reason, the nested issues (a list of dicts), the JS name, the system error's code.
      expect(outcomes[0]!.attrs).toMatchObject({ reason: "not-entered", key: "Model", state: "entering" })
      expect(outcomes[1]!.attrs?.["issues"]).toEqual([{ path: ["x"], message: "Expected number" }])
      expect(outcomes[13]!.attrs).toMatchObject({ name: "QuotaExceeded", limit: 3 })
      expect(outcomes[14]!.attrs).toMatchObject({ code: "ENOENT", syscall: "open" })
    })
  )

  it.effect("a declared error with booleans and bytes reaches Python whole, and TS as its class", () =>
    Effect.gen(function* () {
      const error = new Overloaded({ retryable: true, load: { queued: 4, paused: false }, trace: new Uint8Array([1]) })
      const body = yield* errBody(error)
      const [outcome] = yield* referenceClient([body])
      // The class it chose by annotation; booleans as ints (Python's True == 1).
      expect(outcome!.raised).toBe("ConnectionRefusedError")
      expect(outcome!.str).toBe("overloaded: 4 queued")
      expect(outcome!.attrs).toMatchObject({
        _tag: "Overloaded",
        retryable: 1,
        load: { queued: 4, paused: 0 },
        trace: { bytes: "AQ==" }
      })
      const decoded = yield* Wire.decodeError(body.err, Overloaded)
      expect(decoded._tag).toBe("Declared")
      const back = decoded._tag === "Declared" ? decoded.error : undefined
      expect(back).toBeInstanceOf(Overloaded)
      expect(back?.retryable).toBe(true)
      expect(back?.load).toEqual({ queued: 4, paused: false })
      // Where a number is as good as a boolean, the number stays.
      const plain = yield* Wire.decodeError((yield* errBody(new Plain({ flag: 1 }))).err, Plain)
      expect(plain._tag === "Declared" && plain.error.flag).toBe(1)
    })
  )

  it.effect("every class in Wire.pythonExceptions survives the client and shows the message", () =>
    Effect.gen(function* () {
      const names = [...Wire.pythonExceptions]
      const bodies = yield* Effect.forEach(names, (name) =>
        errBody({ message: `m ${name}` }).pipe(Effect.map((b) => b))
      )
      const chosen = bodies.map((b, i) => ({ err: { ...(b.err as object), class: names[i] } }))
      const outcomes = yield* referenceClient(chosen)
      outcomes.forEach((outcome, i) => {
        expect(outcome.raised).toBe(names[i])
        expect(outcome.str).toContain(`m ${names[i]}`)
      })
    })
  )

  it.effect("what the worker used to send (a relative module, a JS class name) loses the error in Python", () =>
    Effect.gen(function* () {
      // The failure this encoding fixes, kept as a check that the Python stand-in really resolves classes.
      const [outcome] = yield* referenceClient([
        { err: { type: "obj", module: { type: "relative", path: [] }, class: "ContextNotFound", contents: {} } }
      ])
      expect(outcome!.decodeFailed).toBe("KeyError: 'ContextNotFound'")
      const [withBoolean] = yield* referenceClient([
        {
          err: {
            type: "obj",
            module: { type: "absolute", path: ["builtins"] },
            class: "Exception",
            contents: { x: true }
          }
        }
      ])
      expect(withBoolean!.decodeFailed).toMatch(/^TypeError/)
    })
  )
})

describe.skipIf(!hasPython)("errors a served worker sends, as the Python client raises them", () => {
  const overloaded = Remote.make(
    "overloaded",
    { payload: Schema.Struct({}), success: Schema.Number, error: Overloaded, benchmark: { dataset: [{}] } },
    () => Effect.fail(new Overloaded({ retryable: true, load: { queued: 9, paused: false }, trace: new Uint8Array() }))
  )
  const app = Deployment.make("python", { contexts: [], remotes: [divide, overloaded] })

  it.scopedLive("a declared error is raised with its message, fields and chosen class", () =>
    Effect.gen(function* () {
      const { url } = yield* Worker.serveEffect(app, {
        port: 0,
        host: "127.0.0.1",
        handleSignals: false,
        benchmark: false
      })
      const divided = yield* request(`${url}/remote/divide`, { body: { payload: { kwargs: { a: 7, b: 0 } } } })
      const over = yield* request(`${url}/remote/overloaded`, { body: { payload: {} } })
      expect([divided.status, over.status]).toEqual([200, 200])
      const [a, b] = yield* referenceClient([divided.json.result, over.json.result])
      expect(a).toMatchObject({
        raised: "Exception",
        str: "cannot divide 7 by zero",
        attrs: { _tag: "DivideByZero", reason: "zero-divisor", dividend: 7 }
      })
      expect(b).toMatchObject({
        raised: "ConnectionRefusedError",
        str: "overloaded: 9 queued",
        attrs: { retryable: 1 }
      })
    })
  )
})

describe("Wire.decodeError", () => {
  it.effect("gives back the worker's own errors as their classes, and says what it does not know", () =>
    Effect.gen(function* () {
      const timeout = yield* Wire.decodeError((yield* errBody(new CallTimeout({ remote: "f", timeoutMillis: 5 }))).err)
      expect(timeout._tag).toBe("Worker")
      expect(timeout._tag === "Worker" && timeout.error).toBeInstanceOf(CallTimeout)
      const invalid = new PayloadInvalid({ remote: "f", issues: [new FieldIssue({ path: ["x"], message: "bad" })] })
      const payload = yield* Wire.decodeError((yield* errBody(invalid)).err)
      expect(payload._tag === "Worker" && payload.error).toEqual(invalid)
      const unknown = yield* Wire.decodeError((yield* errBody(new QuotaExceeded(2))).err)
      expect(unknown).toMatchObject({
        _tag: "Unknown",
        pythonClass: "Exception",
        name: "QuotaExceeded",
        message: "over the quota of 2"
      })
      // A declared schema that does not match falls through to the worker's errors.
      const notDeclared = yield* Wire.decodeError(
        (yield* errBody(new ContextNotFound({ key: "K", reason: "not-registered" }))).err,
        Overloaded
      )
      expect(notDeclared._tag === "Worker" && notDeclared.error).toBeInstanceOf(ContextNotFound)
    })
  )

  it.effect("fails only on what is not a wire value", () =>
    Effect.gen(function* () {
      const failure = yield* Effect.flip(Wire.decodeError({ type: "bytes", contents: 3 }))
      expect(failure.path).toBe("$.result.err.contents")
    })
  )
})
