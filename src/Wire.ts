/**
 * The reference wire format: the request envelope, the value encoding (both directions), argument binding, the
 * response bodies, and the NDJSON lines of a stream remote's answer (`streamItem`, `streamEnd`, `streamErr`,
 * `decodeStreamFrames`).
 *
 * Values on the wire follow the reference SDK's serializer: scalars as JSON, everything else as a
 * `{"type": "bytes" | "list" | "tuple" | "dict" | "obj", ...}` form. A request goes
 * `decodeEnvelope` -> `decodeArguments` -> `bindArgs` -> the remote's payload Schema; a result goes `ok` (or `err`)
 * after the remote's success (or error) Schema has encoded it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as Wire from "./Wire.js"
 *
 * const call = (body: unknown) =>
 *   Effect.gen(function*() {
 *     const envelope = yield* Wire.decodeEnvelope(body)
 *     const { args, kwargs } = yield* Wire.decodeArguments(envelope)
 *     const fields = yield* Wire.bindArgs(["prompt", "steps"], args, kwargs)
 *     return yield* Wire.ok({ echoed: fields })
 *   })
 * ```
 *
 * @since 0.1.0
 */
import type { Stream } from "effect"
import { Effect, Either, Schema } from "effect"
import { formatIssues } from "./internal/issues.js"
import * as ndjson from "./internal/ndjson.js"
import * as Python from "./internal/python.js"
import * as internal from "./internal/wire.js"
import { WireDecodeError } from "./WorkerError.js"
import type { WireArgumentError, WireEncodeError } from "./WorkerError.js"

/**
 * A JSON value, as produced by `encodeValue` and ready for `JSON.stringify`.
 *
 * @since 0.1.0
 */
export type Json = internal.Json

/**
 * Where the reference looks up the class of an `obj` value: relative to the caller's root module, or absolute (errors
 * go as `{"type": "absolute", "path": ["builtins"]}`).
 *
 * @since 0.1.0
 */
export type ModuleRef = internal.ModuleRef

/**
 * The nesting limit used when none is given. Each list, tuple, dict, obj or plain array/object is one level; the
 * limit keeps a hostile body from exhausting the stack long before any honest payload reaches it.
 *
 * @since 0.1.0
 */
export const defaultMaxDepth: number = internal.defaultMaxDepth

/**
 * The nesting limit of `checkJson` when none is given, in JSON levels (each array or object is one): 1024. Any value
 * `decodeValue` accepts fits (each of its levels takes at most three JSON levels), and a recursive reader of the parsed
 * JSON (a Schema, an error formatter) runs out of stack only some thousands of levels deep.
 *
 * @since 0.1.0
 */
export const defaultMaxJsonDepth: number = internal.defaultMaxJsonDepth

/**
 * Checks a parsed request body before anything recursive reads it, and fails with a `WireDecodeError` naming the path:
 *
 * - `TooDeep`: arrays and objects nested deeper than `maxDepth` (default `defaultMaxJsonDepth`);
 * - `ForbiddenKey`: an object key `__proto__` anywhere. `JSON.parse` keeps it as data, but the first plain assignment
 *   of it (a Schema decoding a `Record`, `Object.assign`, a handler copying its payload) replaces the prototype with
 *   the client's value. Refused rather than kept: the keys `constructor` and `prototype` stay ordinary data.
 *
 * The walk is iterative, with memory bounded by `maxDepth` whatever the width, and reads no string: call it right
 * after `JSON.parse`, before `decodeEnvelope`. Succeeds with the JSON it was given.
 *
 * @example
 * ```ts
 * const body = yield* Wire.checkJson(JSON.parse(text))
 * const envelope = yield* Wire.decodeEnvelope(body)
 * ```
 *
 * @since 0.1.0
 */
export const checkJson = <A>(
  json: A,
  options?: { readonly maxDepth?: number | undefined }
): Effect.Effect<A, WireDecodeError> =>
  Effect.suspend(() => {
    const error = internal.checkJsonSync(json, options?.maxDepth ?? internal.defaultMaxJsonDepth)
    return error === undefined ? Effect.succeed(json) : Effect.fail(error)
  })

/**
 * Options of `decodeValue`.
 *
 * - `path`: the JSON path of the value being decoded, prefixed to paths in errors (default `"$"`).
 * - `maxDepth`: the nesting limit (default `defaultMaxDepth`).
 *
 * @since 0.1.0
 */
export interface DecodeOptions extends internal.DecodeOptions {}

/**
 * Options of `encodeValue`, `encodeError`, `ok` and `err`.
 *
 * - `maxDepth`: the nesting limit (default `defaultMaxDepth`).
 * - `pythonClass`: the built-in Python exception class the top-level error is sent as, overriding `pythonClass(error)`
 *   (for a caller that knows the error's kind better, e.g. from its Schema; ignored unless it is one of
 *   `pythonExceptions`).
 *
 * @since 0.1.0
 */
export interface EncodeOptions extends internal.EncodeOptions {}

/**
 * Decodes a reference-encoded JSON value into JS values:
 *
 * - numbers, strings, booleans and null as they are;
 * - `{"type": "bytes", "contents": <padded base64>}` -> `Uint8Array`;
 * - `{"type": "list" | "tuple", "contents": [...]}` -> an array (JS has no tuples; the Schema decides);
 * - `{"type": "dict", "contents": [[k, v], ...]}` -> a plain object when every decoded key is a string (so a
 *   `Schema.Struct` or `Schema.Record` payload field reads it directly), otherwise a `Map` (Python keys may be ints,
 *   tuples, ...; a `Map` keeps them distinct). Later duplicate keys win, as in Python. Use `MapFromDict` for a field
 *   that must be a `Map` whatever its keys;
 * - `{"type": "obj", "module": ..., "class": ..., "contents": {...}}` -> a plain object of its decoded fields. The
 *   class and module are checked for shape and dropped: they name a Python class we cannot instantiate, and the
 *   remote's payload Schema gives the value its type. Our own errors carry `_tag` among their fields, so they decode
 *   straight into their `Schema.TaggedError`;
 * - plain JSON arrays and objects (which the reference would reject) as they are, decoded recursively. An object is
 *   read as a typed form when its `type` is one of the five above, or when it has both a string `type` and a
 *   `contents`; any other object is plain data.
 *
 * Fails with a `WireDecodeError` naming the JSON path of the bad value.
 *
 * @example
 * ```ts
 * Wire.decodeValue({ type: "dict", contents: [["n", 1], ["raw", { type: "bytes", contents: "AAE=" }]] })
 * // Effect.succeed({ n: 1, raw: Uint8Array [0, 1] })
 * ```
 *
 * @since 0.1.0
 */
export const decodeValue: (json: unknown, options?: DecodeOptions) => Effect.Effect<unknown, WireDecodeError> =
  internal.decodeValue

/**
 * Encodes a JS value in the reference format, readable by the reference's Python client:
 *
 * - strings, finite numbers, null as JSON; `undefined` as null (what a Python function returning nothing sends);
 *   booleans as JSON booleans (the reference documents them; its own deserializer happens to reject them);
 * - `Uint8Array` (and `Buffer`) -> `bytes`; arrays -> `list`; `Map` -> `dict` with encoded keys;
 * - plain objects -> `dict` with string keys, skipping `undefined` fields. Not plain JSON: the reference's
 *   `deserialize` reads `json["type"]` of every non-scalar, so a bare JSON object or array fails there; and not
 *   `obj`, which makes the client import a module and look up a class that does not exist on its side;
 * - `Error`s -> as `encodeError`.
 *
 * Fails with a `WireEncodeError` for bigint, NaN and ±Infinity, functions, symbols, cycles, too deep nesting and other
 * objects (Set, Date, class instances: encode them with their Schema first).
 *
 * @since 0.1.0
 */
export const encodeValue: (value: unknown, options?: EncodeOptions) => Effect.Effect<Json, WireEncodeError> =
  internal.encodeValue

/**
 * Encodes an error so that the reference's Python client raises it as a built-in exception carrying the message, and
 * our TS client can still decode it back into its tagged class (`decodeError`):
 *
 * - `module` is `{"type": "absolute", "path": ["builtins"]}` and `class` a built-in exception chosen by kind (see
 *   `pythonClass`): Python callers catch `KeyError`, `TypeError`, `TimeoutError`, ... as they would from Python code;
 * - `contents` holds `args`, a tuple with the message (what `str(err)` shows), then the error's own fields (`_tag`,
 *   `reason`, ...; for an `Error` without a `_tag`, its JS `name`), then `message` (which the reference loses);
 * - booleans anywhere inside become `1`/`0` (the reference client cannot decode a JSON boolean, and one bad field would
 *   lose the exception); `decodeError` turns them back where the error's Schema wants a boolean;
 * - a field named `args` or a dunder (`__x__`) is not sent: Python reserves those names.
 *
 * @example
 * ```ts
 * Wire.encodeError(new ContextNotFound({ key: "Model", reason: "not-entered", state: "entering" }))
 * // { type: "obj", module: { type: "absolute", path: ["builtins"] }, class: "KeyError",
 * //   contents: { args: { type: "tuple", contents: ["Context \"Model\" is registered but not entered (state: entering)"] },
 * //     key: "Model", reason: "not-entered", state: "entering", _tag: "ContextNotFound",
 * //     message: "Context \"Model\" is registered but not entered (state: entering)" } }
 * ```
 *
 * @since 0.1.0
 */
export const encodeError: (error: unknown, options?: EncodeOptions) => Effect.Effect<Json, WireEncodeError> =
  internal.encodeError

/**
 * The Python built-in exception classes an error may be sent as (each checked to survive the reference client's
 * `cls.__new__(cls)` and `setattr`, and to show its message in `str(err)`).
 *
 * @since 0.1.0
 */
export const pythonExceptions: ReadonlySet<string> = Python.pythonExceptions

/**
 * The annotation by which a declared error chooses the Python built-in exception it is sent as (one of
 * `pythonExceptions`; any other value is ignored).
 *
 * @example
 * ```ts
 * class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", { retryIn: Schema.Number }, {
 *   [Wire.PythonException]: "ConnectionRefusedError"
 * }) {}
 * ```
 *
 * @since 0.1.0
 */
export const PythonException: typeof Python.PythonExceptionId = Python.PythonExceptionId

/**
 * The Python built-in exception class `encodeError` sends an error as. In order:
 *
 * 1. the `PythonException` annotation of the error's Schema class;
 * 2. our own errors by `_tag` (and `reason`): `ContextNotFound` and `SessionNotFound` -> `KeyError`; `PayloadInvalid`,
 *    `WireArgumentError`, `WireDecodeError` -> `TypeError`; `CallTimeout`, `ContextTimeout` -> `TimeoutError`;
 *    `WireEncodeError` -> `TypeError` (`ValueError` for NaN/Infinity, as `json.dumps` does); `CallFailed` ->
 *    `TypeError` when the result could not be encoded, else `RuntimeError`; `Unauthorized` -> `PermissionError`;
 *    `ImageInvalid`, `PayloadTooLarge`, `DeploymentInvalid` -> `ValueError`; `RemoteNotFound` -> `LookupError`; the
 *    rest (`WorkerUnavailable`, `SessionGone`, `StartupFailed`, ...) -> `RuntimeError`;
 * 3. a `_tag` or JS `name` that is itself the name of one of `pythonExceptions` (a declared `ValueError`);
 * 4. JS's own errors by `name`: `TypeError` -> `TypeError`; `RangeError`, `SyntaxError`, `URIError` -> `ValueError`;
 *    `ReferenceError` -> `NameError`; a `TimeoutError` DOMException -> `TimeoutError`;
 * 5. Node's system errors by `code`: `ENOENT` -> `FileNotFoundError`, `EACCES` -> `PermissionError`, `ECONNREFUSED`
 *    -> `ConnectionRefusedError`, `ETIMEDOUT` -> `TimeoutError`, ... (`OSError` for other codes with a `syscall`);
 * 6. otherwise `Exception`.
 *
 * @since 0.1.0
 */
export const pythonClass: (error: unknown) => string = Python.pythonClass

/**
 * What `decodeError` makes of an `err` value:
 *
 * - `Declared`: the remote's declared error, decoded by its Schema (a tagged error class instance);
 * - `Worker`: one of the worker's own errors (`ContextNotFound`, `CallFailed`, `SessionGone`, ...) as its class;
 * - `Unknown`: neither (an undeclared error the worker sent anyway): its Python class, `_tag` and JS `name` when sent,
 *   its message, and the decoded value.
 *
 * @since 0.1.0
 */
export type DecodedError<E> = internal.DecodedError<E>

/**
 * Decodes the `err` of a `{"result": {"err": ...}}` body back into a TS error: first by the remote's declared error
 * Schema (when given), then as one of the worker's own errors by `_tag`. Booleans that `encodeError` sent as `1`/`0`
 * are turned back where the Schema wants a boolean. Fails only when the value is not a wire value at all.
 *
 * @example
 * ```ts
 * const decoded = yield* Wire.decodeError(body.result.err, remote.error)
 * if (decoded._tag !== "Unknown") return yield* Effect.fail(decoded.error)
 * ```
 *
 * @since 0.1.0
 */
export const decodeError: <E, I>(
  json: unknown,
  declared?: Schema.Schema<E, I, never>
) => Effect.Effect<DecodedError<E>, WireDecodeError> = internal.decodeError

/**
 * A Schema for a `Map` field fed by `decodeValue`: accepts the `Map` it yields for non-string keys and the plain
 * object it yields for string keys (including an empty dict), then decodes keys and values with the given schemas.
 * Encodes to a `Map`, which `encodeValue` sends as a `dict`.
 *
 * @example
 * ```ts
 * const Payload = Schema.Struct({ weights: Wire.MapFromDict({ key: Schema.String, value: Schema.Number }) })
 * ```
 *
 * @since 0.1.0
 */
export const MapFromDict = <K extends Schema.Schema.Any, V extends Schema.Schema.Any>(options: {
  readonly key: K
  readonly value: V
}) =>
  Schema.transform(
    Schema.Union(
      Schema.MapFromSelf({ key: Schema.Unknown, value: Schema.Unknown }),
      Schema.Record({ key: Schema.String, value: Schema.Unknown })
    ),
    Schema.MapFromSelf(options),
    {
      strict: false,
      decode: (input) => (input instanceof Map ? input : new Map(Object.entries(input))),
      encode: (map) => map
    }
  )

// The router has been seen sending numbers both as JSON numbers and as strings (`"cost": "1"` vs `1.0`).
const LooseNumber = Schema.Union(Schema.Number, Schema.NumberFromString)

// The reference treats a null field like a missing one; so do we.
const optional = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { nullable: true })

/**
 * The router's `auth_data`. Every field is optional here (an `UNSECURED` worker needs none); numbers may arrive as
 * JSON numbers or numeric strings and decode to numbers; unknown fields are ignored.
 *
 * @since 0.1.0
 */
export const AuthData = Schema.Struct({
  cost: optional(LooseNumber),
  endpoint: optional(Schema.String),
  reqnum: optional(LooseNumber),
  request_idx: optional(LooseNumber),
  signature: optional(Schema.String),
  url: optional(Schema.String)
})

/**
 * @since 0.1.0
 */
export interface AuthData extends Schema.Schema.Type<typeof AuthData> {}

// Not Schema.Record: it rebuilds the object by assignment, so a "__proto__" keyword would vanish and swap the
// prototype of the copy. The object JSON.parse made is kept as it is instead; its own keys are the keywords.
const Kwargs = Schema.declare(
  (u: unknown): u is Readonly<Record<string, unknown>> =>
    typeof u === "object" &&
    u !== null &&
    !Array.isArray(u) &&
    [Object.prototype, null].includes(Object.getPrototypeOf(u)),
  { identifier: "Kwargs", description: "an object of keyword arguments" }
)

/**
 * A call's `payload`: positional `args` and keyword `kwargs`, both optional, their values still wire-encoded.
 *
 * @since 0.1.0
 */
export const Payload = Schema.Struct({
  args: optional(Schema.Array(Schema.Unknown)),
  kwargs: optional(Kwargs)
})

/**
 * @since 0.1.0
 */
export interface Payload extends Schema.Schema.Type<typeof Payload> {}

/**
 * The body of `POST /remote/<name>`: `{ payload?, auth_data?, session_id? }`. Extra fields are ignored.
 *
 * @since 0.1.0
 */
export const Envelope = Schema.Struct({
  payload: optional(Payload),
  auth_data: optional(AuthData),
  session_id: optional(Schema.String)
})

/**
 * @since 0.1.0
 */
export interface Envelope extends Schema.Schema.Type<typeof Envelope> {}

const decodeEnvelopeSchema = Schema.decodeUnknownEither(Envelope)

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path
    .slice(0, 32)
    .reduce<string>(
      (acc, key) =>
        typeof key === "number" ? internal.pathIndex(acc, key) : internal.pathKey(acc, String(key).slice(0, 100)),
      "$"
    )

/**
 * {@link decodeEnvelope}, synchronously.
 *
 * @since 0.2.0
 */
export const decodeEnvelopeEither = (body: unknown): Either.Either<Envelope, WireDecodeError> => {
  const fast = envelopeFastPath(body)
  return fast !== undefined ? Either.right(fast) : decodeEnvelopeBySchema(body)
}

const isPlainRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" &&
  u !== null &&
  !Array.isArray(u) &&
  [Object.prototype, null].includes(Object.getPrototypeOf(u))

const decodeAuthData = Schema.decodeUnknownEither(AuthData)

/**
 * The envelope of a typical call, checked by hand: `payload` with an `args` array and a `kwargs` object, `auth_data`
 * through its Schema, a string `session_id`, nothing null. What it does not recognise (or what fails) goes to the
 * Schema, which names the problem; what it accepts, the Schema accepts the same way (the Schema decode of the whole
 * envelope was a tenth of a trivial call's time).
 */
const envelopeFastPath = (body: unknown): Envelope | undefined => {
  if (!isPlainRecord(body)) return undefined
  const payload = body["payload"]
  const session = body["session_id"]
  const auth = body["auth_data"]
  if (session !== undefined && typeof session !== "string") return undefined
  let decodedPayload: Payload | undefined
  if (payload !== undefined) {
    if (!isPlainRecord(payload)) return undefined
    const args = payload["args"]
    const kwargs = payload["kwargs"]
    if (args !== undefined && !Array.isArray(args)) return undefined
    if (kwargs !== undefined && !isPlainRecord(kwargs)) return undefined
    decodedPayload = {
      ...(args === undefined ? {} : { args: args as ReadonlyArray<unknown> }),
      ...(kwargs === undefined ? {} : { kwargs })
    }
  }
  let decodedAuth: AuthData | undefined
  if (auth !== undefined) {
    const r = decodeAuthData(auth)
    if (Either.isLeft(r)) return undefined
    decodedAuth = r.right
  }
  return {
    ...(decodedPayload === undefined ? {} : { payload: decodedPayload }),
    ...(decodedAuth === undefined ? {} : { auth_data: decodedAuth }),
    ...(session === undefined ? {} : { session_id: session })
  }
}

const decodeEnvelopeBySchema = (body: unknown): Either.Either<Envelope, WireDecodeError> =>
  Either.mapLeft(decodeEnvelopeSchema(body), (error) => {
    // Bounded: the offending value is previewed, not written out (it may be megabytes, or deeply nested), and the
    // message and path are cut (internal/issues.ts).
    const issue = formatIssues(error, { maxIssues: 1 })[0]
    const path = formatPath(issue?.path ?? [])
    return new WireDecodeError({
      reason: "InvalidEnvelope",
      path,
      message: `invalid request body: ${issue?.message ?? error.message} (at ${path})`
    })
  })

/**
 * Decodes a parsed request body into an `Envelope`. Fails with a `WireDecodeError` (`InvalidEnvelope`) naming the
 * path of the first bad field.
 *
 * @since 0.1.0
 */
export const decodeEnvelope = (body: unknown): Effect.Effect<Envelope, WireDecodeError> =>
  Effect.suspend(() => decodeEnvelopeEither(body))

/**
 * A call's arguments after `decodeArguments`: JS values, ready for `bindArgs`.
 *
 * @since 0.1.0
 */
export interface Arguments {
  readonly args: ReadonlyArray<unknown>
  readonly kwargs: Record<string, unknown>
}

/**
 * Decodes the wire values of an envelope's `args` and `kwargs` with `decodeValue` (missing ones are empty). Errors
 * name paths from the body's root, e.g. `$.payload.kwargs.image.contents`.
 *
 * @since 0.1.0
 */
export const decodeArguments = (
  envelope: Envelope,
  options?: { readonly maxDepth?: number }
): Effect.Effect<Arguments, WireDecodeError> => Effect.suspend(() => decodeArgumentsEither(envelope, options))

/** A JSON scalar the wire encoding carries as it is (a string, a finite number, a boolean, null): nothing to decode. */
const isScalar = (u: unknown): boolean =>
  typeof u === "string" || typeof u === "boolean" || u === null || (typeof u === "number" && Number.isFinite(u))

/**
 * {@link decodeArguments}, synchronously.
 *
 * @since 0.2.0
 */
export const decodeArgumentsEither = (
  envelope: Envelope,
  options?: { readonly maxDepth?: number }
): Either.Either<Arguments, WireDecodeError> => {
  const maxDepth = options?.maxDepth ?? defaultMaxDepth
  try {
    const rawArgs = envelope.payload?.args ?? []
    const args: Array<unknown> = new Array(rawArgs.length)
    for (let i = 0; i < rawArgs.length; i++) {
      const raw = rawArgs[i]
      args[i] = isScalar(raw) ? raw : internal.decodeValueUnsafe(raw, { path: `$.payload.args[${i}]`, maxDepth })
    }
    const kwargs: Record<string, unknown> = {}
    const rawKwargs = envelope.payload?.kwargs ?? {}
    for (const key of Object.keys(rawKwargs)) {
      if (key === internal.forbiddenKey) {
        const path = internal.pathKey("$.payload.kwargs", key)
        return Either.left(
          new WireDecodeError({ reason: "ForbiddenKey", path, message: internal.forbiddenKeyMessage(path) })
        )
      }
      const raw = rawKwargs[key]
      kwargs[key] = isScalar(raw)
        ? raw
        : internal.decodeValueUnsafe(raw, { path: internal.pathKey("$.payload.kwargs", key), maxDepth })
    }
    return Either.right({ args, kwargs })
  } catch (e) {
    if (e instanceof WireDecodeError) return Either.left(e)
    throw e
  }
}

/**
 * Binds call arguments to a remote function's fields, as Python binds a call: positional `args` fill `fieldNames` in
 * order, then `kwargs` by name. Missing fields are left out (the payload Schema reports them, or fills defaults).
 * Fails with a `WireArgumentError`: `TooManyPositional`, `DuplicateArgument` or `UnknownKeyword`, naming the field.
 * With `anyKeyword` (a payload with an index signature, Python's `**kwargs`), keywords beyond `fieldNames` pass.
 *
 * @example
 * ```ts
 * Wire.bindArgs(["prompt", "steps"], ["a cat"], { steps: 20 })
 * // Effect.succeed({ prompt: "a cat", steps: 20 })
 * ```
 *
 * @since 0.1.0
 */
export const bindArgs: (
  fieldNames: ReadonlyArray<string>,
  args: ReadonlyArray<unknown>,
  kwargs: Readonly<Record<string, unknown>>,
  options?: { readonly anyKeyword?: boolean | undefined }
) => Effect.Effect<Record<string, unknown>, WireArgumentError> = internal.bindArgs

/**
 * The body of a successful call.
 *
 * @since 0.1.0
 */
export interface OkBody {
  readonly result: { readonly ok: Json }
}

/**
 * The body of a call whose remote function failed (sent with status 200, as the reference does).
 *
 * @since 0.1.0
 */
export interface ErrBody {
  readonly result: { readonly err: Json }
}

/**
 * Encodes a result as a success body: `{ result: { ok: <encoded value> } }`.
 *
 * @since 0.1.0
 */
export const ok = (value: unknown, options?: EncodeOptions): Effect.Effect<OkBody, WireEncodeError> =>
  Effect.map(encodeValue(value, options), (encoded) => ({ result: { ok: encoded } }))

/**
 * Encodes an error as a failure body: `{ result: { err: <encoded error> } }` (see `encodeError`).
 *
 * @since 0.1.0
 */
export const err = (error: unknown, options?: EncodeOptions): Effect.Effect<ErrBody, WireEncodeError> =>
  Effect.map(encodeError(error, options), (encoded) => ({ result: { err: encoded } }))

// ---------------------------------------------------------------------------
// streams
// ---------------------------------------------------------------------------

/**
 * The content type of a stream remote's answer (`200`): one JSON object per line.
 *
 * @since 0.1.0
 */
export const streamContentType: string = ndjson.contentType

/**
 * What a stream's closing `{"end": {...}}` line carries: at least `count`, the number of items sent.
 *
 * @since 0.1.0
 */
export type StreamEnd = ndjson.EndSummary

/**
 * One decoded line of a stream answer: an `Item` (its value decoded from the wire encoding), or the closing `End`
 * or `Err` (the error value decoded, not yet checked against a Schema).
 *
 * @since 0.1.0
 */
export type StreamFrame = ndjson.Frame

/**
 * The line of one stream element: `{"item": <value in the wire encoding>}` and a newline. Give it the value already
 * encoded by the element's Schema.
 *
 * @example
 * ```ts
 * Wire.streamItem("the") // Effect.succeed('{"item":"the"}\n')
 * ```
 *
 * @since 0.1.0
 */
export const streamItem: (value: unknown, options?: EncodeOptions) => Effect.Effect<string, WireEncodeError> =
  ndjson.itemLine

/**
 * The closing line of a stream that completed: `{"end": {"count": n, ...}}` and a newline.
 *
 * @since 0.1.0
 */
export const streamEnd: (summary: StreamEnd) => string = ndjson.endLine

/**
 * The closing line of a stream that failed midway: `{"err": <encoded error>}` and a newline (see `encodeError`).
 *
 * @since 0.1.0
 */
export const streamErr: (error: unknown, options?: EncodeOptions) => Effect.Effect<string, WireEncodeError> =
  ndjson.errLine

/**
 * Decodes a stream answer from its body bytes, however they are split into chunks (mid-line, mid-character). Emits
 * each `Item`, then the closing `End` or `Err` frame, and stops there. Fails with a `WireDecodeError` naming the line:
 * not JSON (`InvalidJson`), not a frame, an `end` whose count differs from the items received, or a line after the
 * closing one (`InvalidShape`); a body that stops before its closing line is `Truncated`.
 *
 * @example
 * ```ts
 * const frames = Wire.decodeStreamFrames(response.stream)
 * // Item("the"), Item("cat"), End({ count: 2 })
 * ```
 *
 * @since 0.1.0
 */
export const decodeStreamFrames: <E, R>(
  bytes: Stream.Stream<Uint8Array, E, R>,
  options?: DecodeOptions
) => Stream.Stream<StreamFrame, E | WireDecodeError, R> = ndjson.decodeFrames
