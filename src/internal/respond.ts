import type {
  CallFailed,
  CallTimeout,
  PayloadInvalid,
  PayloadTooLarge,
  RemoteNotFound,
  SessionGone,
  SessionNotFound,
  Unauthorized,
  WireArgumentError,
  WireDecodeError,
  WorkerUnavailable
} from "../WorkerError.js"

/** A response as the server writes it: everything decided, nothing left to compute. */
export interface Response {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** A path the worker does not serve (404). */
export interface RouteNotFound {
  readonly _tag: "RouteNotFound"
  readonly message: string
}

/** A path served with other methods (405 with `Allow`). */
export interface MethodNotAllowed {
  readonly _tag: "MethodNotAllowed"
  readonly allow: string
  readonly message: string
}

/** A request whose body did not arrive in full within the body timeout of its headers (408; the connection closes). */
export interface RequestTimeout {
  readonly _tag: "RequestTimeout"
  readonly timeoutMillis: number
  readonly message: string
}

/** A request body in a media type other than JSON (415). */
export interface UnsupportedMediaType {
  readonly _tag: "UnsupportedMediaType"
  readonly contentType: string
  readonly message: string
}

/**
 * Every error the worker itself answers with. A remote's declared error is not among them: it is the remote's result
 * (200 `{"result":{"err":...}}`), whatever its class.
 */
export type ServeError =
  | WireDecodeError
  | WireArgumentError
  | PayloadInvalid
  | PayloadTooLarge
  | Unauthorized
  | RemoteNotFound
  | WorkerUnavailable
  | CallTimeout
  | CallFailed
  | SessionNotFound
  | SessionGone
  | RouteNotFound
  | MethodNotAllowed
  | RequestTimeout
  | UnsupportedMediaType

const JSON_TYPE = "application/json"

/** The longest string field echoed in an error body: a megabyte of bad input must not come back doubled. */
const MAX_FIELD = 2000

const cap = (value: unknown): unknown =>
  typeof value === "string" && value.length > MAX_FIELD ? `${value.slice(0, MAX_FIELD)}... (truncated)` : value

/** An error as a JSON body: `_tag`, its fields (with `reason`) and its message, never its stack. */
export const errorBody = (error: ServeError): string => {
  const out: Record<string, unknown> = { _tag: error._tag }
  for (const [key, value] of Object.entries(error)) out[key] = cap(value)
  out["message"] = cap(error.message)
  return JSON.stringify(out)
}

/** Shared by every JSON answer without headers of its own (`write` copies what it sends). */
const jsonHeaders: Readonly<Record<string, string>> = Object.freeze({ "content-type": JSON_TYPE })

const json = (status: number, body: string, headers?: Record<string, string>): Response => ({
  status,
  headers: headers === undefined ? jsonHeaders : { "content-type": JSON_TYPE, ...headers },
  body
})

/** `Retry-After` in whole seconds (at least 1), as HTTP says. */
export const retryAfter = (millis: number | undefined): Record<string, string> => ({
  "retry-after": String(Math.max(1, Math.ceil((millis ?? 1000) / 1000)))
})

/** The one table from the worker's errors to statuses, headers and bodies. */
export const errorResponse = (e: ServeError): Response => {
  switch (e._tag) {
    case "WireDecodeError":
    case "WireArgumentError":
    case "PayloadInvalid":
    // The reference answers 400 for a session `get` or `end` cannot find.
    case "SessionNotFound":
      return json(400, errorBody(e))
    case "SessionGone":
      // The reference's Python client marks its session closed on a 410.
      return json(410, errorBody(e))
    case "Unauthorized":
      return json(401, errorBody(e), { "www-authenticate": "Bearer" })
    case "RemoteNotFound":
    case "RouteNotFound":
      return json(404, errorBody(e))
    case "MethodNotAllowed":
      return json(405, errorBody(e), { allow: e.allow })
    case "PayloadTooLarge":
      // The rest of the body is not read: the connection cannot be reused.
      return json(413, errorBody(e), { connection: "close" })
    case "RequestTimeout":
      // The rest of the body may still be on its way: the connection cannot be reused.
      return json(408, errorBody(e), { connection: "close" })
    case "UnsupportedMediaType":
      return json(415, errorBody(e), { "accept-post": JSON_TYPE })
    case "WorkerUnavailable":
      if (e.reason === "queue-full" || e.reason === "session-limit") {
        return json(429, errorBody(e), retryAfter(e.retryAfterMillis))
      }
      return json(503, errorBody(e), e.reason === "starting" ? retryAfter(e.retryAfterMillis) : undefined)
    case "CallTimeout":
      return json(504, errorBody(e))
    case "CallFailed":
      // Interrupted by the worker's shutdown: the call may be retried elsewhere.
      return json(e.reason === "interrupted" ? 503 : 500, errorBody(e))
  }
}

/** A 200 with an already encoded JSON body (`{"result": ...}`). */
export const okResponse = (body: string): Response => json(200, body)
