import { Effect, Either, ParseResult, Schema, SchemaAST } from "effect"
import * as WorkerError from "../WorkerError.js"
import { WireArgumentError, WireDecodeError, WireEncodeError } from "../WorkerError.js"
import * as Python from "./python.js"

/** @internal */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

/** @internal */
export interface ModuleRef {
  readonly type: "relative" | "absolute"
  readonly path: ReadonlyArray<string>
}

/** @internal */
export const defaultMaxDepth = 256

// ---------------------------------------------------------------------------
// paths
// ---------------------------------------------------------------------------

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** The longest piece of client input (a key, a type name) that an error message or path echoes. @internal */
export const maxEchoLength = 64

/**
 * A string as an error message quotes it: JSON-quoted, cut at `maxEchoLength` characters with its full length said
 * (a megabyte of key must not come back as a megabyte of error body). @internal
 */
export const quote = (s: string): string =>
  s.length <= maxEchoLength
    ? JSON.stringify(s)
    : `${JSON.stringify(s.slice(0, maxEchoLength))}... (${s.length} characters)`

/** A key as a path segment; one over `maxEchoLength` characters is cut, ending in "...". @internal */
export const pathKey = (path: string, key: string): string =>
  identifier.test(key) && key.length <= maxEchoLength
    ? `${path}.${key}`
    : `${path}[${JSON.stringify(key.length <= maxEchoLength ? key : `${key.slice(0, maxEchoLength)}...`)}]`

/** @internal */
export const pathIndex = (path: string, index: number): string => `${path}[${index}]`

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

// Plain assignment of a "__proto__" key would replace the prototype instead of adding a field, silently dropping a
// value a client sent; defining the property keeps it as ordinary data. Every other key is assigned (defining each
// property was a measurable share of a trivial call).
/** @internal */
export const setField = (target: Record<string, unknown>, key: string, value: unknown): void => {
  if (key === forbiddenKey) {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
  } else {
    target[key] = value
  }
}

const isPlainObject = (u: unknown): u is Record<string, unknown> => {
  if (typeof u !== "object" || u === null) return false
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

const hasOwn = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key)

const describe = (u: unknown): string => {
  if (u === null) return "null"
  if (Array.isArray(u)) return "an array"
  if (typeof u === "object") {
    // Through the prototype: an own "constructor" key of JSON data is data, not the class.
    const name = (Object.getPrototypeOf(u) as { constructor?: { name?: unknown } } | null)?.constructor?.name
    return typeof name === "string" && name !== "Object" ? `an instance of ${name}` : "an object"
  }
  return `a ${typeof u}`
}

// Python's b64encode always pads, so the strict padded alphabet is what a reference client sends; anything else is
// more likely a mistake (url-safe alphabet, a raw string) than data worth guessing at. Decoding, then encoding again
// and comparing checks exactly that (Buffer's decoder skips what is not base64; the round trip does not) in one pass
// each, five times faster than a regex over the string, and the decoded bytes are kept.
const decodePaddedBase64 = (s: string): Buffer | undefined => {
  if (s.length % 4 !== 0) return undefined
  const bytes = Buffer.from(s, "base64")
  return bytes.toString("base64") === s ? bytes : undefined
}

// A view of the decoded bytes when they own their memory exactly; a copy otherwise (a small Buffer lives in a shared
// pool, and a large one may sit in a larger allocation: a view would expose other memory through `.buffer`).
const ownBytes = (bytes: Buffer): Uint8Array =>
  bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length
    ? new Uint8Array(bytes.buffer, 0, bytes.length)
    : new Uint8Array(bytes)

// ---------------------------------------------------------------------------
// checking parsed JSON
// ---------------------------------------------------------------------------

/**
 * The nesting limit of `checkJson`, in JSON levels (each array or object is one). Any value `decodeValue` accepts fits:
 * each of its `defaultMaxDepth` levels takes at most three JSON levels (a dict's object, its `contents` array, a
 * pair), plus the envelope's. A recursive reader of the parsed JSON (a Schema, an error formatter) runs out of stack
 * only some thousands of levels deep. @internal
 */
export const defaultMaxJsonDepth = 1024

/**
 * The one key refused anywhere in a request: JavaScript reads `__proto__` as the prototype, not as data. `JSON.parse`
 * keeps it as an own key, but every plain assignment afterwards (a Schema decoding a `Record`, `Object.assign`, a
 * handler copying its payload) would replace the copy's prototype with the client's value. @internal
 */
export const forbiddenKey = "__proto__"

/** @internal */
export const forbiddenKeyMessage = (path: string): string =>
  `the key "${forbiddenKey}" is not accepted: JavaScript would make its value the object's prototype (at ${path})`

/** Segments of a path that `checkJson` reports before cutting it short. */
const maxPathSegments = 32

interface Level {
  readonly container: object
  /** The keys of an object; undefined for an array. */
  readonly keys: ReadonlyArray<string> | undefined
  readonly length: number
  /** The next child to visit (its index in `keys`, or in the array). */
  next: number
}

/**
 * Checks parsed JSON: arrays and objects nested at most `maxDepth` deep, and no `__proto__` key. Iterative, with one
 * entry per level on its own stack (memory bounded by `maxDepth`, whatever the width), so no input can overflow the
 * call stack; it reads no string. Returns the error, or undefined when the JSON is fine. @internal
 */
export const checkJsonSync = (
  json: unknown,
  maxDepth: number = defaultMaxJsonDepth,
  root: string = "$"
): WireDecodeError | undefined => {
  if (typeof json !== "object" || json === null) return undefined
  const levels: Array<Level> = []
  // The path to the child being visited at level `depth - 1`, built only when something is at fault; past
  // `maxPathSegments` levels it ends in "..." (a path a thousand levels long says no more than its start).
  const pathTo = (depth: number): string => {
    let path = root
    for (let i = 0; i < depth; i++) {
      if (i === maxPathSegments) return `${path}...`
      const level = levels[i]!
      const at = level.next - 1
      path = level.keys === undefined ? pathIndex(path, at) : pathKey(path, level.keys[at]!)
    }
    return path
  }
  const enter = (container: object): WireDecodeError | undefined => {
    if (levels.length >= maxDepth) {
      const path = pathTo(levels.length)
      return new WireDecodeError({
        reason: "TooDeep",
        path,
        message: `arrays and objects nested deeper than ${maxDepth} levels (at ${path})`
      })
    }
    if (Array.isArray(container)) {
      levels.push({ container, keys: undefined, length: container.length, next: 0 })
      return undefined
    }
    const keys = Object.keys(container)
    levels.push({ container, keys, length: keys.length, next: 0 })
    return undefined
  }
  const first = enter(json)
  if (first !== undefined) return first
  while (levels.length > 0) {
    const level = levels[levels.length - 1]!
    if (level.next >= level.length) {
      levels.pop()
      continue
    }
    const at = level.next++
    let child: unknown
    if (level.keys === undefined) {
      child = (level.container as ReadonlyArray<unknown>)[at]
    } else {
      const key = level.keys[at]!
      if (key === forbiddenKey) {
        const path = pathTo(levels.length)
        return new WireDecodeError({ reason: "ForbiddenKey", path, message: forbiddenKeyMessage(path) })
      }
      child = (level.container as Record<string, unknown>)[key]
    }
    if (typeof child === "object" && child !== null) {
      const error = enter(child)
      if (error !== undefined) return error
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------
// decoding
// ---------------------------------------------------------------------------

/** @internal */
export interface DecodeOptions {
  readonly path?: string
  readonly maxDepth?: number
}

const knownTypes = new Set(["bytes", "list", "tuple", "dict", "obj"])

const decodeFail = (reason: WireDecodeError["reason"], path: string, message: string): never => {
  throw new WireDecodeError({ reason, path, message: `${message} (at ${path})` })
}

const decodeAt = (json: unknown, path: string, depth: number, maxDepth: number): unknown => {
  switch (typeof json) {
    case "string":
    case "boolean":
      return json
    case "number":
      // JSON.parse never yields these; they mean the caller handed us something that was not JSON.
      if (!Number.isFinite(json)) return decodeFail("InvalidShape", path, `${json} is not a JSON number`)
      return json
    case "object":
      break
    default:
      return decodeFail("InvalidShape", path, `${describe(json)} is not a JSON value`)
  }
  if (json === null) return null
  if (depth >= maxDepth) return decodeFail("TooDeep", path, `value nested deeper than ${maxDepth} levels`)
  const next = depth + 1
  if (Array.isArray(json)) {
    return json.map((item, i) => decodeAt(item, pathIndex(path, i), next, maxDepth))
  }
  if (!isPlainObject(json)) return decodeFail("InvalidShape", path, `${describe(json)} is not a JSON value`)

  const type = json["type"]
  const isTyped = typeof type === "string" && (knownTypes.has(type) || hasOwn(json, "contents"))
  if (!isTyped) {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(json)) {
      if (key === forbiddenKey) return refuseKey(pathKey(path, key))
      setField(out, key, decodeAt(json[key], pathKey(path, key), next, maxDepth))
    }
    return out
  }

  const contents = json["contents"]
  const contentsPath = pathKey(path, "contents")
  switch (type) {
    case "bytes": {
      if (typeof contents !== "string") {
        const got = describe(contents)
        return decodeFail("InvalidBytes", contentsPath, `bytes contents must be a base64 string, got ${got}`)
      }
      const bytes = decodePaddedBase64(contents)
      if (bytes === undefined) return decodeFail("InvalidBytes", contentsPath, "bytes contents is not padded base64")
      return ownBytes(bytes)
    }
    case "list":
    case "tuple": {
      if (!Array.isArray(contents)) {
        return decodeFail("InvalidShape", contentsPath, `${type} contents must be an array, got ${describe(contents)}`)
      }
      return contents.map((item, i) => decodeAt(item, pathIndex(contentsPath, i), next, maxDepth))
    }
    case "dict":
      return decodeDict(contents, contentsPath, next, maxDepth)
    case "obj":
      return decodeObj(json, path, next, maxDepth)
    default:
      return decodeFail("UnknownType", pathKey(path, "type"), `unknown value type ${quote(type)}`)
  }
}

const decodeDict = (contents: unknown, path: string, depth: number, maxDepth: number): unknown => {
  if (!Array.isArray(contents)) {
    const got = describe(contents)
    return decodeFail("InvalidShape", path, `dict contents must be an array of [key, value] pairs, got ${got}`)
  }
  const entries: Array<readonly [unknown, unknown]> = []
  let allStrings = true
  contents.forEach((pair, i) => {
    const pairPath = pathIndex(path, i)
    if (!Array.isArray(pair) || pair.length !== 2) {
      return decodeFail("InvalidShape", pairPath, `dict entry must be a [key, value] pair, got ${describe(pair)}`)
    }
    const key = decodeAt(pair[0], pathIndex(pairPath, 0), depth, maxDepth)
    // A string key becomes an object's key (below): the same refusal as for an object's own keys.
    if (key === forbiddenKey) return refuseKey(pathIndex(pairPath, 0))
    const value = decodeAt(pair[1], pathIndex(pairPath, 1), depth, maxDepth)
    if (typeof key !== "string") allStrings = false
    entries.push([key, value])
  })
  if (!allStrings) return new Map(entries)
  const out: Record<string, unknown> = {}
  // Later duplicates win, as in Python's dict().
  for (const [key, value] of entries) setField(out, key as string, value)
  return out
}

const refuseKey = (path: string): never => {
  throw new WireDecodeError({ reason: "ForbiddenKey", path, message: forbiddenKeyMessage(path) })
}

const decodeObj = (json: Record<string, unknown>, path: string, depth: number, maxDepth: number): unknown => {
  const cls = json["class"]
  if (typeof cls !== "string") {
    return decodeFail("InvalidShape", pathKey(path, "class"), `obj class must be a string, got ${describe(cls)}`)
  }
  if (hasOwn(json, "module")) {
    const mod = json["module"]
    const modPath = pathKey(path, "module")
    if (
      !isPlainObject(mod) ||
      (mod["type"] !== "relative" && mod["type"] !== "absolute") ||
      !Array.isArray(mod["path"]) ||
      !mod["path"].every((p) => typeof p === "string")
    ) {
      const expected = `{"type": "relative" | "absolute", "path": [strings]}`
      return decodeFail("InvalidShape", modPath, `obj module must be ${expected}`)
    }
  }
  const contents = json["contents"]
  const contentsPath = pathKey(path, "contents")
  if (!isPlainObject(contents)) {
    const got = describe(contents)
    return decodeFail("InvalidShape", contentsPath, `obj contents must be an object of fields, got ${got}`)
  }
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(contents)) {
    if (key === forbiddenKey) return refuseKey(pathKey(contentsPath, key))
    setField(out, key, decodeAt(contents[key], pathKey(contentsPath, key), depth, maxDepth))
  }
  return out
}

/** Decode a wire value; throws `WireDecodeError` (the call pipeline's synchronous form). @internal */
export const decodeValueUnsafe = (json: unknown, options?: DecodeOptions): unknown =>
  decodeAt(json, options?.path ?? "$", 0, options?.maxDepth ?? defaultMaxDepth)

/** @internal */
export const decodeValue = (json: unknown, options?: DecodeOptions): Effect.Effect<unknown, WireDecodeError> =>
  catching(WireDecodeError, () => decodeValueUnsafe(json, options))

// ---------------------------------------------------------------------------
// encoding
// ---------------------------------------------------------------------------

/** @internal */
export interface EncodeOptions {
  readonly maxDepth?: number
  readonly pythonClass?: string | undefined
}

interface EncodeState {
  readonly maxDepth: number
  // The class the top-level error is sent as, when the caller chose it.
  readonly pythonClass: string | undefined
  // Set while the fields of an error are encoded: the reference's Python client cannot decode a JSON boolean (its
  // deserializer indexes every non-scalar), and one bad field would lose the whole exception.
  booleansAsInts: boolean
  // Only the values on the current path: a value shared by two siblings is fine, one containing itself is not.
  readonly ancestors: Set<object>
}

const encodeFail = (reason: WireEncodeError["reason"], path: string, message: string): never => {
  throw new WireEncodeError({ reason, path, message: `${message} (at ${path})` })
}

const keyLabel = (key: unknown, index: number): string =>
  typeof key === "string" || typeof key === "number" || typeof key === "boolean" || key === null
    ? JSON.stringify(key)
    : `<key #${index}>`

const encodeAt = (value: unknown, path: string, depth: number, state: EncodeState): Json => {
  switch (typeof value) {
    case "undefined":
      // `undefined` is what a JS function returns when a Python one would return None.
      return null
    case "string":
      return value
    case "boolean":
      return state.booleansAsInts ? (value ? 1 : 0) : value
    case "number":
      if (!Number.isFinite(value)) return encodeFail("NonFiniteNumber", path, `${value} cannot be sent as JSON`)
      return Object.is(value, -0) ? 0 : value
    case "bigint":
      return encodeFail("UnsupportedValue", path, "a bigint cannot be sent; convert it to a number or a string")
    case "object":
      break
    default:
      return encodeFail("UnsupportedValue", path, `${describe(value)} cannot be sent`)
  }
  if (value === null) return null
  if (value instanceof Uint8Array) {
    return { type: "bytes", contents: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") }
  }
  if (depth >= state.maxDepth) return encodeFail("TooDeep", path, `value nested deeper than ${state.maxDepth} levels`)
  if (state.ancestors.has(value)) return encodeFail("Cycle", path, "value contains itself")
  state.ancestors.add(value)
  try {
    return encodeObject(value, path, depth + 1, state)
  } finally {
    state.ancestors.delete(value)
  }
}

const encodeObject = (value: object, path: string, depth: number, state: EncodeState): Json => {
  if (Array.isArray(value)) {
    // Array.from visits holes too (as undefined, hence null), where map would skip them.
    return { type: "list", contents: Array.from(value, (item, i) => encodeAt(item, pathIndex(path, i), depth, state)) }
  }
  if (value instanceof Map) {
    const contents: Array<Json> = []
    let i = 0
    for (const [key, item] of value) {
      contents.push([
        encodeAt(key, `${path}.keys()[${i}]`, depth, state),
        encodeAt(item, `${path}.get(${keyLabel(key, i)})`, depth, state)
      ])
      i++
    }
    return { type: "dict", contents }
  }
  if (value instanceof Error) return encodeErrorAt(value, path, depth, state)
  if (isPlainObject(value)) {
    const contents: Array<Json> = []
    for (const key of Object.keys(value)) {
      const item = value[key]
      // As JSON.stringify does: an absent optional field and one set to undefined look the same to JS code.
      if (item === undefined) continue
      contents.push([key, encodeAt(item, pathKey(path, key), depth, state)])
    }
    return { type: "dict", contents }
  }
  return encodeFail(
    "UnsupportedValue",
    path,
    `${describe(value)} cannot be sent; encode it with its Schema first ` +
      "(plain objects, arrays, Maps and Uint8Arrays can)"
  )
}

// Python attribute names the client must not setattr: `args` is ours; dunders (`__class__`, `__dict__`, ...) would
// change the object itself or fail.
const reservedField = (key: string): boolean => key === "args" || (key.startsWith("__") && key.endsWith("__"))

// A Schema class error (a `Schema.TaggedError`) is encoded with its own Schema first, so that fields holding other
// Schema classes (`PayloadInvalid.issues`) become plain data; any other error is sent as its own enumerable fields.
const errorFields = (error: unknown): Record<string, unknown> | undefined => {
  if (typeof error !== "object" || error === null) return undefined
  const ctor = (error as { constructor?: unknown }).constructor
  if (Schema.isSchema(ctor)) {
    try {
      const encoded = Schema.encodeUnknownSync(ctor as Schema.Schema<unknown, unknown, never>)(error)
      if (isPlainObject(encoded)) return encoded
    } catch {
      // Not encodable by its own Schema (a field set after construction): its fields as they are.
    }
  }
  return error as Record<string, unknown>
}

const encodeErrorAt = (error: unknown, path: string, depth: number, state: EncodeState, top = false): Json => {
  const wasInError = state.booleansAsInts
  state.booleansAsInts = true
  try {
    const contents: Record<string, Json> = {}
    const contentsPath = pathKey(path, "contents")
    const fields = errorFields(error)
    const tag = fields?.["_tag"]
    const name = typeof tag === "string" ? undefined : Python.jsName(error)
    // An Error's message is an own but non-enumerable property (or a getter), so Object.keys misses it; the reference
    // loses it the same way (it sends __dict__ only). We send it twice: as Python's `args`, which `str(err)` shows,
    // and as `message` for TS callers and `err.message` in Python.
    const message =
      error instanceof Error
        ? error.message
        : typeof error === "string"
          ? error
          : typeof fields?.["message"] === "string"
            ? (fields["message"] as string)
            : undefined
    const text = message !== undefined && message !== "" ? message : typeof tag === "string" ? tag : (name ?? "error")
    setField(contents, "args", { type: "tuple", contents: [text] })
    if (fields !== undefined) {
      for (const key of Object.keys(fields)) {
        const item = fields[key]
        if (item === undefined || reservedField(key)) continue
        setField(contents, key, encodeAt(item, pathKey(contentsPath, key), depth, state))
      }
    }
    if (name !== undefined && !hasOwn(contents, "name")) setField(contents, "name", name)
    if (message !== undefined && !hasOwn(contents, "message")) setField(contents, "message", message)
    const override = top ? state.pythonClass : undefined
    return {
      type: "obj",
      module: { type: Python.builtinsModule.type, path: [...Python.builtinsModule.path] },
      class: Python.isPythonException(override) ? override : Python.pythonClass(error),
      contents
    }
  } finally {
    state.booleansAsInts = wasInError
  }
}

/** Encode a value for the wire; throws `WireEncodeError` (the call pipeline's synchronous form). @internal */
export const encodeValueUnsafe = (value: unknown, options?: EncodeOptions): Json =>
  // A string or a finite number is sent as it is (the usual answer: no state to make for it).
  typeof value === "string" || (typeof value === "number" && Number.isFinite(value) && !Object.is(value, -0))
    ? value
    : encodeAt(value, "$", 0, makeState(options))

/** Encode an error for the wire; throws `WireEncodeError`. @internal */
export const encodeErrorUnsafe = (error: unknown, options?: EncodeOptions): Json => {
  const state = makeState(options)
  if (typeof error === "object" && error !== null) state.ancestors.add(error)
  return encodeErrorAt(error, "$", 1, state, true)
}

/** @internal */
export const encodeValue = (value: unknown, options?: EncodeOptions): Effect.Effect<Json, WireEncodeError> =>
  catching(WireEncodeError, () => encodeValueUnsafe(value, options))

/** @internal */
export const encodeError = (error: unknown, options?: EncodeOptions): Effect.Effect<Json, WireEncodeError> =>
  catching(WireEncodeError, () => encodeErrorUnsafe(error, options))

const makeState = (options: EncodeOptions | undefined): EncodeState => ({
  maxDepth: options?.maxDepth ?? defaultMaxDepth,
  pythonClass: options?.pythonClass,
  booleansAsInts: false,
  ancestors: new Set()
})

// The walkers throw their typed error to unwind deep recursion cheaply; this turns exactly that error back into a
// typed failure. Anything else thrown is a bug and stays a defect.
const catching = <A, E>(
  ErrorClass: abstract new (...args: ReadonlyArray<never>) => E,
  f: () => A
): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (e) {
      if (e instanceof ErrorClass) return Effect.fail(e)
      throw e
    }
  })

// ---------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------

// A field named by the client, as an error carries it back: cut at `maxEchoLength` characters.
const echoKey = (key: string): string => (key.length <= maxEchoLength ? key : `${key.slice(0, maxEchoLength)}...`)

/** Bind call arguments to a remote's fields, synchronously. @internal */
export const bindArgsEither = (
  fieldNames: ReadonlyArray<string>,
  args: ReadonlyArray<unknown>,
  kwargs: Readonly<Record<string, unknown>>,
  options?: { readonly anyKeyword?: boolean | undefined }
): Either.Either<Record<string, unknown>, WireArgumentError> => {
  if (args.length > fieldNames.length) {
    return Either.left(
      new WireArgumentError({
        reason: "TooManyPositional",
        message: `takes ${fieldNames.length} positional argument${
          fieldNames.length === 1 ? "" : "s"
        } but ${args.length} ${args.length === 1 ? "was" : "were"} given`
      })
    )
  }
  const out: Record<string, unknown> = {}
  for (let i = 0; i < args.length; i++) setField(out, fieldNames[i]!, args[i])
  for (const key of Object.keys(kwargs)) {
    if (options?.anyKeyword !== true && !fieldNames.includes(key)) {
      return Either.left(
        new WireArgumentError({
          reason: "UnknownKeyword",
          field: echoKey(key),
          message: `got an unexpected keyword argument ${quote(key)}`
        })
      )
    }
    if (hasOwn(out, key)) {
      return Either.left(
        new WireArgumentError({
          reason: "DuplicateArgument",
          field: echoKey(key),
          message: `got multiple values for argument ${quote(key)}`
        })
      )
    }
    setField(out, key, kwargs[key])
  }
  return Either.right(out)
}

/** @internal */
export const bindArgs = (
  fieldNames: ReadonlyArray<string>,
  args: ReadonlyArray<unknown>,
  kwargs: Readonly<Record<string, unknown>>,
  options?: { readonly anyKeyword?: boolean | undefined }
): Effect.Effect<Record<string, unknown>, WireArgumentError> =>
  Effect.suspend(() => bindArgsEither(fieldNames, args, kwargs, options))

// ---------------------------------------------------------------------------
// decoding errors (the TS client's side)
// ---------------------------------------------------------------------------

/** @internal */
export type WorkerErrorValue =
  | WorkerError.ContextNotFound
  | WorkerError.ContextTimeout
  | WorkerError.PayloadInvalid
  | WorkerError.RemoteNotFound
  | WorkerError.WorkerUnavailable
  | WorkerError.CallTimeout
  | WorkerError.CallFailed
  | WorkerError.ImageInvalid
  | WorkerError.StartupFailed
  | WorkerError.ShutdownFailed
  | WorkerError.DeploymentInvalid
  | WorkerError.BenchmarkFailed
  | WorkerError.WireDecodeError
  | WorkerError.WireEncodeError
  | WorkerError.WireArgumentError
  | WorkerError.Unauthorized
  | WorkerError.PayloadTooLarge
  | WorkerError.SessionNotFound
  | WorkerError.SessionGone
  | WorkerError.SessionRequired

const workerErrors: ReadonlyMap<string, Schema.Schema<WorkerErrorValue, any>> = new Map(
  [
    WorkerError.ContextNotFound,
    WorkerError.ContextTimeout,
    WorkerError.PayloadInvalid,
    WorkerError.RemoteNotFound,
    WorkerError.WorkerUnavailable,
    WorkerError.CallTimeout,
    WorkerError.CallFailed,
    WorkerError.ImageInvalid,
    WorkerError.StartupFailed,
    WorkerError.ShutdownFailed,
    WorkerError.DeploymentInvalid,
    WorkerError.BenchmarkFailed,
    WorkerError.WireDecodeError,
    WorkerError.WireEncodeError,
    WorkerError.WireArgumentError,
    WorkerError.Unauthorized,
    WorkerError.PayloadTooLarge,
    WorkerError.SessionNotFound,
    WorkerError.SessionGone,
    WorkerError.SessionRequired
  ].map((cls) => [cls._tag, cls as unknown as Schema.Schema<WorkerErrorValue, any>] as const)
)

/** @internal */
export type DecodedError<E> =
  | { readonly _tag: "Declared"; readonly error: E }
  | { readonly _tag: "Worker"; readonly error: WorkerErrorValue }
  | {
      readonly _tag: "Unknown"
      readonly pythonClass: string | undefined
      readonly tag: string | undefined
      readonly name: string | undefined
      readonly message: string
      readonly value: unknown
    }

const isBooleanAst = (ast: SchemaAST.AST): boolean =>
  ast._tag === "BooleanKeyword" || (ast._tag === "Literal" && typeof ast.literal === "boolean")

/**
 * Undo the booleans-as-ints of an error's fields where the (encoded side of the) schema wants a boolean. Walks the
 * parts a tagged error's fields are made of; anything else is left as it is.
 *
 * @internal
 */
export const restoreBooleans = (ast: SchemaAST.AST, value: unknown): unknown => {
  switch (ast._tag) {
    case "BooleanKeyword":
      return value === 1 ? true : value === 0 ? false : value
    case "Literal":
      return typeof ast.literal === "boolean" && (value === 0 || value === 1) ? value === 1 : value
    case "Refinement":
      return restoreBooleans(ast.from, value)
    case "Transformation":
      return restoreBooleans(ast.from, value)
    case "Suspend":
      return restoreBooleans(ast.f(), value)
    case "TypeLiteral": {
      if (!isPlainObject(value)) return value
      const out: Record<string, unknown> = {}
      for (const key of Object.keys(value)) {
        const property = ast.propertySignatures.find((p) => p.name === key)
        const index = property === undefined ? ast.indexSignatures[0] : undefined
        const type = property?.type ?? index?.type
        setField(out, key, type === undefined ? value[key] : restoreBooleans(type, value[key]))
      }
      return out
    }
    case "TupleType": {
      if (!Array.isArray(value)) return value
      return value.map((item, i) => {
        const type = ast.elements[i]?.type ?? ast.rest[0]?.type
        return type === undefined ? item : restoreBooleans(type, item)
      })
    }
    case "Union": {
      if (value === 0 || value === 1) {
        const asNumber = ast.types.some((member) => ParseResult.is(Schema.make(member))(value))
        return !asNumber && ast.types.some(isBooleanAst) ? value === 1 : value
      }
      for (const member of ast.types) {
        const candidate = restoreBooleans(member, value)
        if (ParseResult.is(Schema.make(member))(candidate)) return candidate
      }
      return value
    }
    default:
      return value
  }
}

const messageOf = (value: unknown): string => {
  if (typeof value === "string") return value
  if (!isPlainObject(value)) return JSON.stringify(value) ?? String(value)
  if (typeof value["message"] === "string") return value["message"]
  const args = value["args"]
  if (Array.isArray(args) && typeof args[0] === "string") return args[0]
  return typeof value["_tag"] === "string" ? value["_tag"] : "error"
}

/** @internal */
export const decodeError = <E, I>(
  json: unknown,
  declared?: Schema.Schema<E, I, never>
): Effect.Effect<DecodedError<E>, WireDecodeError> =>
  Effect.gen(function* () {
    const value = yield* decodeValue(json, { path: "$.result.err" })
    if (declared !== undefined) {
      const restored = restoreBooleans(SchemaAST.encodedAST(declared.ast), value)
      const result = yield* Effect.either(Schema.decodeUnknown(declared)(restored))
      if (result._tag === "Right") return { _tag: "Declared", error: result.right } as const
    }
    const tag = isPlainObject(value) && typeof value["_tag"] === "string" ? value["_tag"] : undefined
    const known = tag === undefined ? undefined : workerErrors.get(tag)
    if (known !== undefined) {
      const result = yield* Effect.either(Schema.decodeUnknown(known)(value))
      if (result._tag === "Right") return { _tag: "Worker", error: result.right } as const
    }
    const cls = isPlainObject(json) && typeof json["class"] === "string" ? json["class"] : undefined
    const name = isPlainObject(value) && typeof value["name"] === "string" ? value["name"] : undefined
    return { _tag: "Unknown", pythonClass: cls, tag, name, message: messageOf(value), value } as const
  })
