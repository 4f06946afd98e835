import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Wire from "../src/Wire.js"
import { WireArgumentError, WireDecodeError, WireEncodeError } from "../src/WorkerError.js"

const bytes = (...xs: ReadonlyArray<number>) => new Uint8Array(xs)

// Through JSON text, as a value really travels.
const roundTrip = (value: unknown) =>
  Effect.gen(function* () {
    const encoded = yield* Wire.encodeValue(value)
    return yield* Wire.decodeValue(JSON.parse(JSON.stringify(encoded)))
  })

const decodeFailure = (json: unknown, options?: Wire.DecodeOptions) => Effect.flip(Wire.decodeValue(json, options))
const encodeFailure = (value: unknown) => Effect.flip(Wire.encodeValue(value))

class ModelError extends Schema.TaggedError<ModelError>()("ModelError", {
  reason: Schema.Literal("OutOfMemory"),
  message: Schema.String,
  gpu: Schema.Number,
  detail: Schema.Uint8ArrayFromSelf
}) {}

describe("Wire.decodeValue", () => {
  it.effect("passes scalars through", () =>
    Effect.gen(function* () {
      for (const v of [0, -1.5, 1e300, "", "é", true, false, null]) {
        expect(yield* Wire.decodeValue(v)).toBe(v)
      }
    })
  )

  it.effect("decodes the reference's typed forms", () =>
    Effect.gen(function* () {
      const json = {
        type: "dict",
        contents: [
          ["raw", { type: "bytes", contents: "AAH/" }],
          ["list", { type: "list", contents: [1, "a", null] }],
          ["pair", { type: "tuple", contents: [1, { type: "list", contents: [] }] }],
          ["nested", { type: "dict", contents: [["inner", { type: "dict", contents: [] }]] }],
          [
            "point",
            {
              type: "obj",
              module: { type: "absolute", path: ["geometry", "shapes"] },
              class: "Point",
              contents: { x: 1, y: { type: "bytes", contents: "" } }
            }
          ]
        ]
      }
      expect(yield* Wire.decodeValue(json)).toEqual({
        raw: bytes(0, 1, 255),
        list: [1, "a", null],
        pair: [1, []],
        nested: { inner: {} },
        point: { x: 1, y: bytes() }
      })
    })
  )

  it.effect("decodes a dict with non-string keys into a Map", () =>
    Effect.gen(function* () {
      const decoded = yield* Wire.decodeValue({
        type: "dict",
        contents: [
          [1, "one"],
          ["1", "string one"],
          [{ type: "tuple", contents: [1, 2] }, "pair"]
        ]
      })
      expect(decoded).toBeInstanceOf(Map)
      const map = decoded as Map<unknown, unknown>
      expect(map.get(1)).toBe("one")
      expect(map.get("1")).toBe("string one")
      expect([...map.entries()][2]).toEqual([[1, 2], "pair"])
    })
  )

  it.effect("keeps the last of duplicate dict keys", () =>
    Effect.gen(function* () {
      const decoded = (yield* Wire.decodeValue({
        type: "dict",
        contents: [
          ["a", 1],
          ["a", 2]
        ]
      })) as Record<string, unknown>
      expect(decoded).toEqual({ a: 2 })
    })
  )

  it.effect(
    "refuses a __proto__ key in plain objects, dict keys and obj fields; constructor and prototype are data",
    () =>
      Effect.gen(function* () {
        const cases: ReadonlyArray<readonly [string, string]> = [
          ['{"a": {"__proto__": {"polluted": true}}}', "$.a.__proto__"],
          [
            '{"type": "dict", "contents": [["a", 1], ["__proto__", {"type": "dict", "contents": []}]]}',
            "$.contents[1][0]"
          ],
          ['{"type": "obj", "class": "C", "contents": {"__proto__": 1}}', "$.contents.__proto__"]
        ]
        for (const [text, path] of cases) {
          const error = yield* decodeFailure(JSON.parse(text))
          expect([error.reason, error.path]).toEqual(["ForbiddenKey", path])
          expect(error.message).toContain("__proto__")
        }
        expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
        const data = (yield* Wire.decodeValue(
          JSON.parse(
            '{"constructor": {"name": "Evil"}, "prototype": 1, "dict": {"type": "dict", "contents": [["constructor", 2]]}}'
          )
        )) as Record<string, any>
        expect(Object.getPrototypeOf(data)).toBe(Object.prototype)
        expect(Object.keys(data)).toEqual(["constructor", "prototype", "dict"])
        expect(data["constructor"]).toEqual({ name: "Evil" })
        expect(Object.hasOwn(data["dict"], "constructor")).toBe(true)
        // Said to be an object, not "an instance of Evil": the own key is data.
        const notBytes = yield* decodeFailure({ type: "bytes", contents: { constructor: { name: "Evil" } } })
        expect(notBytes.message).toContain("got an object")
      })
  )

  it.effect("accepts plain JSON arrays and objects, decoding inside them", () =>
    Effect.gen(function* () {
      const decoded = yield* Wire.decodeValue({
        type: "dog",
        tags: ["a", { type: "bytes", contents: "AA==" }],
        nested: { ok: true }
      })
      expect(decoded).toEqual({ type: "dog", tags: ["a", bytes(0)], nested: { ok: true } })
    })
  )

  it.effect("fails on non-base64 bytes, naming the path", () =>
    Effect.gen(function* () {
      const error = yield* decodeFailure({
        type: "list",
        contents: [1, { type: "dict", contents: [["img", { type: "bytes", contents: "not base64!" }]] }]
      })
      expect(error).toBeInstanceOf(WireDecodeError)
      expect(error.reason).toBe("InvalidBytes")
      expect(error.path).toBe("$.contents[1].contents[0][1].contents")
      expect(error.message).toContain("$.contents[1].contents[0][1].contents")
    })
  )

  it.effect("decodes bytes of many megabytes (an image), and still rejects misplaced padding", () =>
    Effect.gen(function* () {
      const big = Buffer.alloc(8 * 1024 * 1024)
      for (let i = 0; i < big.length; i++) big[i] = i % 251
      const decoded = yield* Wire.decodeValue({ type: "bytes", contents: big.toString("base64") })
      expect(decoded).toBeInstanceOf(Uint8Array)
      // Compared as buffers: a deep equality over 8 million elements is slow.
      expect(big.equals(decoded as Uint8Array)).toBe(true)
      for (const contents of ["AA=A", "A===", "AAAA=", "=AAA"]) {
        expect((yield* decodeFailure({ type: "bytes", contents })).reason).toBe("InvalidBytes")
      }
      expect(yield* Wire.decodeValue({ type: "bytes", contents: "AA==" })).toEqual(new Uint8Array([0]))
    })
  )

  it.effect("fails on unpadded base64 and on non-string bytes contents", () =>
    Effect.gen(function* () {
      expect((yield* decodeFailure({ type: "bytes", contents: "AAE" })).reason).toBe("InvalidBytes")
      const error = yield* decodeFailure({ type: "bytes", contents: [1, 2] })
      expect(error.reason).toBe("InvalidBytes")
      expect(error.path).toBe("$.contents")
    })
  )

  it.effect("fails on an unknown type tag with contents, naming the path", () =>
    Effect.gen(function* () {
      const error = yield* decodeFailure({ a: [{ type: "set", contents: [1] }] })
      expect(error.reason).toBe("UnknownType")
      expect(error.path).toBe("$.a[0].type")
    })
  )

  it.effect("fails on malformed known forms", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ type: "list" }, "$.contents"],
        [{ type: "tuple", contents: "ab" }, "$.contents"],
        [{ type: "dict", contents: [["a", 1], ["b"]] }, "$.contents[1]"],
        [{ type: "dict", contents: { a: 1 } }, "$.contents"],
        [{ type: "obj", module: { type: "relative", path: [] }, contents: {} }, "$.class"],
        [{ type: "obj", module: { type: "nearby", path: [] }, class: "A", contents: {} }, "$.module"],
        [{ type: "obj", class: "A", contents: [1] }, "$.contents"],
        [{ "a key": { type: "list", contents: {} } }, '$["a key"].contents']
      ]
      for (const [json, path] of cases) {
        const error = yield* decodeFailure(json)
        expect(error.reason, JSON.stringify(json)).toBe("InvalidShape")
        expect(error.path, JSON.stringify(json)).toBe(path)
      }
    })
  )

  it.effect("fails on values that are not JSON", () =>
    Effect.gen(function* () {
      for (const v of [undefined, NaN, 1n, () => 1, new Date(0)]) {
        expect((yield* decodeFailure({ x: [v] })).path).toBe("$.x[0]")
      }
    })
  )

  it.effect("limits nesting depth without blowing the stack", () =>
    Effect.gen(function* () {
      let deep: unknown = 1
      for (let i = 0; i < 100_000; i++) deep = { type: "list", contents: [deep] }
      const error = yield* decodeFailure(deep)
      expect(error.reason).toBe("TooDeep")
      expect(error.path.startsWith("$.contents[0].contents[0]")).toBe(true)

      let plain: unknown = 1
      for (let i = 0; i < 10; i++) plain = [plain]
      expect((yield* decodeFailure(plain, { maxDepth: 5 })).reason).toBe("TooDeep")
      expect(yield* Wire.decodeValue(plain, { maxDepth: 10 })).toEqual(plain)
    })
  )

  it.effect("prefixes paths with the given root", () =>
    Effect.gen(function* () {
      const error = yield* decodeFailure({ type: "bytes", contents: "%%" }, { path: "$.payload.args[2]" })
      expect(error.path).toBe("$.payload.args[2].contents")
    })
  )
})

describe("Wire.encodeValue", () => {
  it.effect("encodes in the reference's forms", () =>
    Effect.gen(function* () {
      const encoded = yield* Wire.encodeValue({
        n: 1,
        s: "x",
        b: true,
        none: null,
        absent: undefined,
        raw: Buffer.from([1, 2, 3]),
        list: [1, [2]],
        map: new Map<unknown, unknown>([
          [1, "a"],
          [bytes(9), "b"]
        ])
      })
      expect(encoded).toEqual({
        type: "dict",
        contents: [
          ["n", 1],
          ["s", "x"],
          ["b", true],
          ["none", null],
          ["raw", { type: "bytes", contents: "AQID" }],
          ["list", { type: "list", contents: [1, { type: "list", contents: [2] }] }],
          [
            "map",
            {
              type: "dict",
              contents: [
                [1, "a"],
                [{ type: "bytes", contents: "CQ==" }, "b"]
              ]
            }
          ]
        ]
      })
    })
  )

  it.effect("encodes only the viewed bytes of a subarray", () =>
    Effect.gen(function* () {
      const view = bytes(0, 1, 2, 3).subarray(1, 3)
      expect(yield* Wire.encodeValue(view)).toEqual({ type: "bytes", contents: "AQI=" })
    })
  )

  it.effect("sends undefined as null and -0 as 0", () =>
    Effect.gen(function* () {
      expect(yield* Wire.encodeValue(undefined)).toBeNull()
      expect(yield* Wire.encodeValue([undefined])).toEqual({ type: "list", contents: [null] })
      expect(Object.is(yield* Wire.encodeValue(-0), 0)).toBe(true)
    })
  )

  it.effect("round-trips bytes, booleans, nested dicts, Maps and lists", () =>
    Effect.gen(function* () {
      const value = {
        flag: false,
        raw: bytes(0, 128, 255),
        nested: { deeper: { list: [true, "x", 1.5, null] } },
        byNumber: new Map([
          [1, "one"],
          [2, "two"]
        ]),
        "weird key": [bytes()]
      }
      expect(yield* roundTrip(value)).toEqual(value)
    })
  )

  it.effect("fails on values with no wire form, naming the path", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, Wire.Json, string]> = [
        [{ a: 1n }, "UnsupportedValue", "$.a"],
        [{ a: [1, NaN] }, "NonFiniteNumber", "$.a[1]"],
        [[Infinity], "NonFiniteNumber", "$[0]"],
        [{ f: () => 1 }, "UnsupportedValue", "$.f"],
        [{ s: Symbol("s") }, "UnsupportedValue", "$.s"],
        [{ when: new Date(0) }, "UnsupportedValue", "$.when"],
        [{ set: new Set([1]) }, "UnsupportedValue", "$.set"],
        [new Map([["k", 1n]]), "UnsupportedValue", '$.get("k")'],
        [new Map([[1n, 1]]), "UnsupportedValue", "$.keys()[0]"]
      ]
      for (const [value, reason, path] of cases) {
        const error = yield* encodeFailure(value)
        expect(error).toBeInstanceOf(WireEncodeError)
        expect(error.reason, path).toBe(reason)
        expect(error.path).toBe(path)
        expect(error.message).toContain(path)
      }
    })
  )

  it.effect("fails on cycles but not on shared values", () =>
    Effect.gen(function* () {
      const cyclic: Record<string, unknown> = { a: 1 }
      cyclic["self"] = { again: cyclic }
      const error = yield* encodeFailure(cyclic)
      expect(error.reason).toBe("Cycle")
      expect(error.path).toBe("$.self.again")

      const shared = { x: 1 }
      expect(yield* roundTrip({ a: shared, b: shared })).toEqual({ a: { x: 1 }, b: { x: 1 } })
    })
  )

  it.effect("limits nesting depth", () =>
    Effect.gen(function* () {
      let deep: unknown = 1
      for (let i = 0; i < 100_000; i++) deep = [deep]
      expect((yield* encodeFailure(deep)).reason).toBe("TooDeep")
    })
  )
})

const builtins = { type: "absolute", path: ["builtins"] }
const args = (message: string) => ({ type: "tuple", contents: [message] })

describe("Wire.encodeError", () => {
  it.effect("sends a tagged error as a builtins exception with args, its tag, fields and message", () =>
    Effect.gen(function* () {
      const error = new ModelError({ reason: "OutOfMemory", message: "CUDA out of memory", gpu: 3, detail: bytes(7) })
      const encoded = yield* Wire.encodeError(error)
      expect(encoded).toEqual({
        type: "obj",
        module: builtins,
        class: "Exception",
        contents: {
          args: args("CUDA out of memory"),
          _tag: "ModelError",
          reason: "OutOfMemory",
          message: "CUDA out of memory",
          gpu: 3,
          detail: { type: "bytes", contents: "Bw==" }
        }
      })
    })
  )

  it.effect("round-trips through the wire into the error's Schema", () =>
    Effect.gen(function* () {
      const error = new ModelError({ reason: "OutOfMemory", message: "CUDA out of memory", gpu: 3, detail: bytes(7) })
      const body = yield* Wire.err(error)
      const decoded = yield* Wire.decodeError(JSON.parse(JSON.stringify(body)).result.err, ModelError)
      expect(decoded._tag).toBe("Declared")
      const back = decoded._tag === "Declared" ? decoded.error : undefined
      expect(back).toBeInstanceOf(ModelError)
      expect(back?.message).toBe("CUDA out of memory")
      expect(back?.gpu).toBe(3)
      expect(back?.detail).toEqual(bytes(7))
    })
  )

  it.effect("keeps the JS name of a plain Error beside its Python class; pythonClass overrides the class", () =>
    Effect.gen(function* () {
      expect(yield* Wire.encodeError(new RangeError("too big"))).toEqual({
        type: "obj",
        module: builtins,
        class: "ValueError",
        contents: { args: args("too big"), name: "RangeError", message: "too big" }
      })
      const chosen = yield* Wire.encodeError(new RangeError("too big"), { pythonClass: "OverflowError" })
      expect(chosen).toMatchObject({ class: "OverflowError" })
      // Not a class the caller can be sure to have: ignored.
      const unsafe = yield* Wire.encodeError(new RangeError("too big"), { pythonClass: "SystemExit" })
      expect(unsafe).toMatchObject({ class: "ValueError" })
    })
  )

  it.effect("encodes errors nested in values and thrown non-errors", () =>
    Effect.gen(function* () {
      expect(yield* Wire.encodeValue([new Error("inner")])).toEqual({
        type: "list",
        contents: [
          {
            type: "obj",
            module: builtins,
            class: "Exception",
            contents: { args: args("inner"), name: "Error", message: "inner" }
          }
        ]
      })
      expect(yield* Wire.encodeError("just a string")).toEqual({
        type: "obj",
        module: builtins,
        class: "Exception",
        contents: { args: args("just a string"), message: "just a string" }
      })
    })
  )

  it.effect("sends booleans inside an error as 1/0 and leaves out names Python reserves", () =>
    Effect.gen(function* () {
      const error = Object.assign(new Error("x"), { retry: true, nested: { ok: false }, args: [1], __class__: "int" })
      const encoded = (yield* Wire.encodeError(error)) as { contents: Record<string, unknown> }
      expect(encoded.contents).toEqual({
        args: args("x"),
        retry: 1,
        nested: { type: "dict", contents: [["ok", 0]] },
        name: "Error",
        message: "x"
      })
      // Outside errors, booleans stay JSON booleans.
      expect(yield* Wire.encodeValue({ flag: true })).toEqual({ type: "dict", contents: [["flag", true]] })
    })
  )

  it.effect("fails when a field has no wire form", () =>
    Effect.gen(function* () {
      const error = Object.assign(new Error("x"), { big: 1n })
      const failure = yield* Effect.flip(Wire.err(error))
      expect(failure.reason).toBe("UnsupportedValue")
      expect(failure.path).toBe("$.contents.big")
    })
  )
})

describe("Wire.ok / Wire.err", () => {
  it.effect("wrap encoded values in the reference's result bodies", () =>
    Effect.gen(function* () {
      expect(yield* Wire.ok([1])).toEqual({ result: { ok: { type: "list", contents: [1] } } })
      expect(yield* Wire.ok(undefined)).toEqual({ result: { ok: null } })
      const body = yield* Wire.err(new Error("boom"))
      expect(body.result.err).toMatchObject({ type: "obj", class: "Exception", contents: { message: "boom" } })
    })
  )
})

describe("Wire.MapFromDict", () => {
  const Payload = Schema.Struct({ weights: Wire.MapFromDict({ key: Schema.NumberFromString, value: Schema.Number }) })
  const ById = Wire.MapFromDict({ key: Schema.Number, value: Schema.String })

  it.effect("turns a string-keyed dict into a Map", () =>
    Effect.gen(function* () {
      const decoded = yield* Wire.decodeValue({
        type: "dict",
        contents: [["weights", { type: "dict", contents: [["1", 0.5]] }]]
      })
      const payload = yield* Schema.decodeUnknown(Payload)(decoded)
      expect(payload.weights).toEqual(new Map([[1, 0.5]]))
    })
  )

  it.effect("takes the Map of a non-string-keyed dict and the object of an empty one", () =>
    Effect.gen(function* () {
      const decoded = yield* Wire.decodeValue({ type: "dict", contents: [[7, "seven"]] })
      expect(yield* Schema.decodeUnknown(ById)(decoded)).toEqual(new Map([[7, "seven"]]))
      const empty = yield* Wire.decodeValue({ type: "dict", contents: [] })
      expect(yield* Schema.decodeUnknown(ById)(empty)).toEqual(new Map())
    })
  )

  it.effect("encodes back to a dict on the wire", () =>
    Effect.gen(function* () {
      const encoded = yield* Schema.encode(ById)(new Map([[7, "seven"]]))
      expect(yield* Wire.encodeValue(encoded)).toEqual({ type: "dict", contents: [[7, "seven"]] })
    })
  )
})

describe("Wire.decodeEnvelope / decodeArguments", () => {
  it.effect("reads a router request, numbers as numbers or strings, ignoring extra fields", () =>
    Effect.gen(function* () {
      const envelope = yield* Wire.decodeEnvelope({
        auth_data: {
          cost: "1",
          endpoint: "/remote/f",
          reqnum: 4,
          request_idx: 42,
          signature: "c2ln",
          url: "http://1.2.3.4:8000/remote/f",
          extra: { whatever: true }
        },
        payload: { args: [{ type: "bytes", contents: "AQ==" }], kwargs: { n: 2 } },
        something_new: 1
      })
      expect(envelope.auth_data).toEqual({
        cost: 1,
        endpoint: "/remote/f",
        reqnum: 4,
        request_idx: 42,
        signature: "c2ln",
        url: "http://1.2.3.4:8000/remote/f"
      })
      expect(yield* Wire.decodeArguments(envelope)).toEqual({ args: [bytes(1)], kwargs: { n: 2 } })
    })
  )

  it.effect("treats missing and null parts as empty", () =>
    Effect.gen(function* () {
      for (const body of [{}, { payload: null, auth_data: null }, { payload: { args: null, kwargs: null } }]) {
        const envelope = yield* Wire.decodeEnvelope(body)
        expect(yield* Wire.decodeArguments(envelope)).toEqual({ args: [], kwargs: {} })
      }
      const envelope = yield* Wire.decodeEnvelope({ auth_data: { cost: 0.5 } })
      expect(envelope.auth_data?.cost).toBe(0.5)
    })
  )

  it.effect("fails on a malformed body, naming the path", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        ["not an object", "$"],
        [{ payload: { args: { 0: 1 } } }, "$.payload.args"],
        [{ payload: { kwargs: [1] } }, "$.payload.kwargs"],
        [{ auth_data: { reqnum: "four" } }, "$.auth_data.reqnum"],
        [{ auth_data: { url: 1 } }, "$.auth_data.url"]
      ]
      for (const [body, path] of cases) {
        const error = yield* Effect.flip(Wire.decodeEnvelope(body))
        expect(error.reason).toBe("InvalidEnvelope")
        expect(error.path, JSON.stringify(body)).toBe(path)
      }
    })
  )

  it.effect("refuses a __proto__ keyword", () =>
    Effect.gen(function* () {
      const body = JSON.parse('{"payload": {"kwargs": {"a": 2, "__proto__": {"a": 1}}}}')
      const envelope = yield* Wire.decodeEnvelope(body)
      const error = yield* Effect.flip(Wire.decodeArguments(envelope))
      expect(error).toMatchObject({ reason: "ForbiddenKey", path: "$.payload.kwargs.__proto__" })
    })
  )

  it.effect("a bad envelope field is a bounded 400 error however deep or long the value", () =>
    Effect.gen(function* () {
      // Deep enough to overflow a recursive formatter (the issue was seen from about 2,250 levels).
      let deep: unknown = 1
      for (let i = 0; i < 100_000; i++) deep = [deep]
      for (const body of [
        { session_id: deep },
        { auth_data: deep },
        { auth_data: { url: deep } },
        { payload: deep },
        { payload: { args: { deep } } }
      ]) {
        const error = yield* Effect.flip(Wire.decodeEnvelope(body))
        expect(error.reason).toBe("InvalidEnvelope")
        expect(error.message.length).toBeLessThan(400)
      }
      const long = yield* Effect.flip(Wire.decodeEnvelope({ session_id: 7, auth_data: { url: "x".repeat(1_000_000) } }))
      expect(long.message.length).toBeLessThan(400)
      const huge = yield* Effect.flip(Wire.decodeEnvelope({ session_id: "x".repeat(1_000_000).split("") }))
      expect(huge.message).toContain("(an array of 1000000 items)")
      expect(huge.message.length).toBeLessThan(400)
    })
  )

  it.effect("names the argument in value errors", () =>
    Effect.gen(function* () {
      const envelope = yield* Wire.decodeEnvelope({
        payload: { args: [1, { type: "list", contents: [{ type: "bytes", contents: "?" }] }] }
      })
      const error = yield* Effect.flip(Wire.decodeArguments(envelope))
      expect(error.path).toBe("$.payload.args[1].contents[0].contents")

      const kw = yield* Wire.decodeEnvelope({ payload: { kwargs: { "my image": { type: "bytes", contents: 1 } } } })
      expect((yield* Effect.flip(Wire.decodeArguments(kw))).path).toBe('$.payload.kwargs["my image"].contents')
    })
  )
})

describe("Wire.bindArgs", () => {
  const fields = ["prompt", "steps", "seed"] as const

  it.effect("binds positionally in declaration order, then by keyword", () =>
    Effect.gen(function* () {
      expect(yield* Wire.bindArgs(fields, ["a cat", 20], { seed: 7 })).toEqual({ prompt: "a cat", steps: 20, seed: 7 })
      expect(yield* Wire.bindArgs(fields, [], { steps: 1 })).toEqual({ steps: 1 })
      expect(yield* Wire.bindArgs(fields, ["x", "y", "z"], {})).toEqual({ prompt: "x", steps: "y", seed: "z" })
    })
  )

  it.effect("fails on too many positional arguments", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Wire.bindArgs(fields, [1, 2, 3, 4], {}))
      expect(error).toBeInstanceOf(WireArgumentError)
      expect(error.reason).toBe("TooManyPositional")
      expect(error.message).toBe("takes 3 positional arguments but 4 were given")
    })
  )

  it.effect("fails on a field given twice", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Wire.bindArgs(fields, ["a", 1], { steps: 2 }))
      expect(error.reason).toBe("DuplicateArgument")
      expect(error.field).toBe("steps")
      expect(error.message).toContain('"steps"')
    })
  )

  it.effect("fails on an unknown keyword", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Wire.bindArgs(fields, [], { prompt: "a", sampler: "ddim" }))
      expect(error.reason).toBe("UnknownKeyword")
      expect(error.field).toBe("sampler")
      expect(error.message).toContain('"sampler"')
      const proto = yield* Effect.flip(Wire.bindArgs(fields, [], JSON.parse('{"__proto__": 1}')))
      expect(proto.field).toBe("__proto__")
      // A client's key is echoed cut short: a megabyte of key is not a megabyte of error.
      const long = yield* Effect.flip(Wire.bindArgs(fields, [], { ["k".repeat(1_000_000)]: 1 }))
      expect(long.field).toBe(`${"k".repeat(64)}...`)
      expect(long.message).toContain("(1000000 characters)")
      expect(long.message.length).toBeLessThan(200)
    })
  )
})

describe("Wire.checkJson", () => {
  const nested = (levels: number, leaf: unknown = 1): unknown => {
    let value = leaf
    for (let i = 0; i < levels; i++) value = i % 2 === 0 ? [value] : { a: value }
    return value
  }

  it.effect("passes JSON up to the depth limit and fails one level deeper, naming the path", () =>
    Effect.gen(function* () {
      expect(yield* Wire.checkJson(nested(1024))).toEqual(nested(1024))
      const error = yield* Effect.flip(Wire.checkJson(nested(1025)))
      expect(error).toBeInstanceOf(WireDecodeError)
      expect(error.reason).toBe("TooDeep")
      expect(error.message).toContain("deeper than 1024 levels")
      // The first 32 levels of the path, then "...".
      expect(error.path).toBe(`$${"[0].a".repeat(16)}...`)
      expect((yield* Effect.flip(Wire.checkJson(nested(4), { maxDepth: 3 }))).path).toBe("$.a[0].a")
      expect(yield* Wire.checkJson(nested(3), { maxDepth: 3 })).toEqual(nested(3))
      for (const scalar of [1, "x", null, true]) expect(yield* Wire.checkJson(scalar, { maxDepth: 0 })).toBe(scalar)
    })
  )

  it.effect("walks a million levels and a million siblings without recursion", () =>
    Effect.gen(function* () {
      const deep = JSON.parse("[".repeat(1_000_000) + "]".repeat(1_000_000))
      expect((yield* Effect.flip(Wire.checkJson(deep))).reason).toBe("TooDeep")
      const wide = Array.from({ length: 1_000_000 }, (_, i) => ({ i, tags: [i] }))
      expect(yield* Wire.checkJson(wide)).toBe(wide)
    })
  )

  it.effect("passes the deepest value decodeValue accepts, in its envelope", () =>
    Effect.gen(function* () {
      let value: unknown = 1
      for (let i = 0; i < Wire.defaultMaxDepth - 1; i++) value = { type: "dict", contents: [["k", value]] }
      const body = JSON.parse(JSON.stringify({ payload: { args: [value], kwargs: { v: value } } }))
      yield* Wire.checkJson(body)
      const envelope = yield* Wire.decodeEnvelope(body)
      const { args } = yield* Wire.decodeArguments(envelope)
      expect(args).toHaveLength(1)
    })
  )

  it.effect("refuses a __proto__ key anywhere, naming it; constructor and prototype pass", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, string]> = [
        ['{"__proto__": {}}', "$.__proto__"],
        ['{"payload": {"kwargs": {"__proto__": {"prompt": "INJECTED"}}}}', "$.payload.kwargs.__proto__"],
        ['{"payload": {"args": [1, {"x": {"__proto__": null}}]}}', "$.payload.args[1].x.__proto__"],
        ['{"auth_data": {"__proto__": 1}}', "$.auth_data.__proto__"]
      ]
      for (const [text, path] of cases) {
        const error = yield* Effect.flip(Wire.checkJson(JSON.parse(text)))
        expect([error.reason, error.path]).toEqual(["ForbiddenKey", path])
        expect(error.message).toBe(
          `the key "__proto__" is not accepted: JavaScript would make its value the object's prototype (at ${path})`
        )
      }
      const data = JSON.parse('{"payload": {"kwargs": {"constructor": 1, "prototype": {"constructor": 2}}}}')
      expect(yield* Wire.checkJson(data)).toBe(data)
      // A string "__proto__" is data: only keys become prototypes (dict keys are checked by decodeValue).
      expect(yield* Wire.checkJson(["__proto__", { k: "__proto__" }])).toEqual(["__proto__", { k: "__proto__" }])
    })
  )

  it.effect("cuts a long key in the path it reports", () =>
    Effect.gen(function* () {
      const key = "k".repeat(100_000)
      const error = yield* Effect.flip(Wire.checkJson({ [key]: [[[1]]] }, { maxDepth: 2 }))
      expect(error.path).toBe(`$[${JSON.stringify(`${"k".repeat(64)}...`)}][0]`)
    })
  )
})
