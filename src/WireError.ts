/**
 * Errors of the wire format: decoding request values, encoding results, binding call arguments.
 *
 * They are `Schema.TaggedError`s because they cross the wire (a bad request is answered with one), and they are told
 * apart by `_tag` and `reason`, never by their message. They will move into the shared `WorkerError` module; until
 * then this module depends on nothing but `effect`.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * Why a reference-encoded JSON value could not be decoded.
 *
 * - `InvalidBytes`: a `bytes` form whose `contents` is not padded standard base64.
 * - `UnknownType`: a `{"type": ..., "contents": ...}` form whose `type` is not one of the reference's.
 * - `InvalidShape`: a known form with missing or mistyped parts, or something that is not JSON at all.
 * - `TooDeep`: nesting beyond the depth limit (a hostile body must not exhaust the stack).
 * - `InvalidEnvelope`: the request body does not match the envelope.
 *
 * @since 0.1.0
 */
export const WireDecodeReason = Schema.Literal(
  "InvalidBytes",
  "UnknownType",
  "InvalidShape",
  "TooDeep",
  "InvalidEnvelope"
)

/**
 * @since 0.1.0
 */
export type WireDecodeReason = typeof WireDecodeReason.Type

/**
 * A request value (or the request envelope) could not be decoded. `path` is the JSON path of the offending value in
 * the wire JSON, e.g. `$.payload.kwargs.image.contents`.
 *
 * @since 0.1.0
 */
export class WireDecodeError extends Schema.TaggedError<WireDecodeError>()("WireDecodeError", {
  reason: WireDecodeReason,
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Why a JS value could not be encoded for the wire.
 *
 * - `UnsupportedValue`: no reference form carries it (bigint, function, symbol, Set, Date, class instances...).
 * - `NonFiniteNumber`: `NaN` or `±Infinity` (JSON has no spelling for them).
 * - `Cycle`: the value contains itself.
 * - `TooDeep`: nesting beyond the depth limit.
 *
 * @since 0.1.0
 */
export const WireEncodeReason = Schema.Literal("UnsupportedValue", "NonFiniteNumber", "Cycle", "TooDeep")

/**
 * @since 0.1.0
 */
export type WireEncodeReason = typeof WireEncodeReason.Type

/**
 * A result (or error) could not be encoded. `path` is the JS path of the offending value inside what was encoded,
 * e.g. `$.items[3].score`.
 *
 * @since 0.1.0
 */
export class WireEncodeError extends Schema.TaggedError<WireEncodeError>()("WireEncodeError", {
  reason: WireEncodeReason,
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Why call arguments could not be bound to a remote function's fields (the reference answers these with Python's
 * `TypeError`).
 *
 * - `TooManyPositional`: more positional arguments than declared fields.
 * - `DuplicateArgument`: a field given both positionally and by keyword.
 * - `UnknownKeyword`: a keyword that names no field.
 *
 * @since 0.1.0
 */
export const WireArgumentReason = Schema.Literal("TooManyPositional", "DuplicateArgument", "UnknownKeyword")

/**
 * @since 0.1.0
 */
export type WireArgumentReason = typeof WireArgumentReason.Type

/**
 * Call arguments do not fit the remote function's fields. `field` names the field (or keyword) at fault; it is absent
 * for `TooManyPositional`, where no field is at fault.
 *
 * @since 0.1.0
 */
export class WireArgumentError extends Schema.TaggedError<WireArgumentError>()("WireArgumentError", {
  reason: WireArgumentReason,
  field: Schema.optional(Schema.String),
  message: Schema.String
}) {}
