import { Option, Schema, SchemaAST } from "effect"

// How an error is named for the reference's Python client. That client resolves `module` with importlib, takes
// `cls = namespace[class]`, makes `cls.__new__(cls)`, setattrs every field of `contents`, and raises the result when it
// is an `Exception`. Only Python's built-in exceptions exist on every caller's side, so an error is sent as one of them
// (module `builtins`), chosen by what kind of failure it is, with its message in `args` and its own fields beside it.

/** @internal */
export const builtinsModule = { type: "absolute", path: ["builtins"] } as const

/**
 * The built-in exception classes an error may be sent as. Each one was checked on CPython 3.11 to survive
 * `cls.__new__(cls)`, `setattr(obj, "args", (message,))` and `str(obj)` with the message (a `KeyError` shows it quoted).
 * Left out on purpose: `BaseException`s that are not `Exception`s (the client raises only `Exception`s), `SyntaxError`
 * and its subclasses and the `Unicode*Error`s (their `str` ignores `args`), `StopIteration`/`StopAsyncIteration`
 * (raised inside a coroutine they turn into a `RuntimeError`), `ExceptionGroup` (its `__new__` needs arguments), the
 * `Warning`s, and the aliases `IOError`/`EnvironmentError` (of `OSError`).
 *
 * @internal
 */
export const pythonExceptions: ReadonlySet<string> = new Set([
  "Exception",
  "ArithmeticError",
  "AssertionError",
  "AttributeError",
  "BlockingIOError",
  "BrokenPipeError",
  "BufferError",
  "ChildProcessError",
  "ConnectionAbortedError",
  "ConnectionError",
  "ConnectionRefusedError",
  "ConnectionResetError",
  "EOFError",
  "FileExistsError",
  "FileNotFoundError",
  "FloatingPointError",
  "ImportError",
  "IndexError",
  "InterruptedError",
  "IsADirectoryError",
  "KeyError",
  "LookupError",
  "MemoryError",
  "ModuleNotFoundError",
  "NameError",
  "NotADirectoryError",
  "NotImplementedError",
  "OSError",
  "OverflowError",
  "PermissionError",
  "ProcessLookupError",
  "RecursionError",
  "RuntimeError",
  "TimeoutError",
  "TypeError",
  "UnboundLocalError",
  "ValueError",
  "ZeroDivisionError"
])

/** @internal */
export const isPythonException = (name: unknown): name is string =>
  typeof name === "string" && pythonExceptions.has(name)

/**
 * The annotation by which a declared error picks its Python class. Public as `Wire.PythonException`.
 *
 * @internal
 */
export const PythonExceptionId: unique symbol = Symbol.for("effect-deployments/Wire/PythonException")

type Fields = Readonly<Record<string, unknown>>

// Our own errors, by `_tag` (and `reason` where one tag covers different kinds of failure).
const byTag: Readonly<Record<string, string | ((error: Fields) => string)>> = {
  // The reference's get_context raises KeyError for a context it does not have.
  ContextNotFound: "KeyError",
  ContextTimeout: "TimeoutError",
  CallTimeout: "TimeoutError",
  // Python raises TypeError for arguments that do not fit a function's signature; bad payloads are that here.
  PayloadInvalid: "TypeError",
  WireArgumentError: "TypeError",
  WireDecodeError: "TypeError",
  // json.dumps raises TypeError for a value it cannot serialize, ValueError for NaN/Infinity (allow_nan=False).
  WireEncodeError: (e) => (e["reason"] === "NonFiniteNumber" ? "ValueError" : "TypeError"),
  CallFailed: (e) => {
    switch (e["reason"]) {
      case "encode":
        return "TypeError"
      case "transport":
        return "ConnectionError"
      default:
        return "RuntimeError"
    }
  },
  RemoteNotFound: "LookupError",
  WorkerUnavailable: (e) => (e["reason"] === "unreachable" ? "ConnectionError" : "RuntimeError"),
  Unauthorized: "PermissionError",
  PayloadTooLarge: "ValueError",
  ImageInvalid: "ValueError",
  DeploymentInvalid: "ValueError",
  StartupFailed: "RuntimeError",
  ShutdownFailed: "RuntimeError",
  BenchmarkFailed: "RuntimeError",
  ListenFailed: "OSError",
  SessionNotFound: "KeyError",
  SessionGone: "RuntimeError",
  SessionRequired: "RuntimeError",
  ThreadFailed: "RuntimeError",
  TlsConfigInvalid: (e) =>
    e["reason"] === "missing" ? "FileNotFoundError" : e["reason"] === "unreadable" ? "PermissionError" : "ValueError"
}

// JS's built-in errors, by `name`, as their closest Python kin.
const byJsName: Readonly<Record<string, string>> = {
  TypeError: "TypeError",
  RangeError: "ValueError",
  SyntaxError: "ValueError", // what JSON.parse throws; Python's json.JSONDecodeError is a ValueError
  URIError: "ValueError",
  ReferenceError: "NameError",
  TimeoutError: "TimeoutError" // DOMException from AbortSignal.timeout
}

// Node's system errors, by `code`.
const byCode: Readonly<Record<string, string>> = {
  ENOENT: "FileNotFoundError",
  EEXIST: "FileExistsError",
  EACCES: "PermissionError",
  EPERM: "PermissionError",
  EISDIR: "IsADirectoryError",
  ENOTDIR: "NotADirectoryError",
  ECONNREFUSED: "ConnectionRefusedError",
  ECONNRESET: "ConnectionResetError",
  ECONNABORTED: "ConnectionAbortedError",
  EPIPE: "BrokenPipeError",
  ETIMEDOUT: "TimeoutError",
  ESRCH: "ProcessLookupError",
  ECHILD: "ChildProcessError",
  EAGAIN: "BlockingIOError",
  EINTR: "InterruptedError",
  ERR_ASSERTION: "AssertionError"
}

const annotated = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null) return undefined
  // A Schema class keeps its annotations on the type side of its transformation.
  const ctor = (error as { constructor?: unknown }).constructor
  if (!Schema.isSchema(ctor) || !SchemaAST.isTransformation(ctor.ast)) return undefined
  const value = SchemaAST.getAnnotation(ctor.ast.to, PythonExceptionId)
  return Option.isSome(value) && isPythonException(value.value) ? value.value : undefined
}

/**
 * The built-in Python exception class an error is sent as. In order: the `PythonException` annotation of its Schema
 * class; our own errors by `_tag` (and `reason`); a `_tag` or JS `name` that is itself a built-in exception's name; JS's
 * built-in errors by `name`; Node's system errors by `code`; otherwise `Exception`.
 *
 * @internal
 */
export const pythonClass = (error: unknown): string => {
  const fromAnnotation = annotated(error)
  if (fromAnnotation !== undefined) return fromAnnotation
  if (typeof error !== "object" || error === null) return "Exception"
  const fields = error as Fields
  const tag = fields["_tag"]
  if (typeof tag === "string") {
    const known = byTag[tag]
    if (known !== undefined) return typeof known === "string" ? known : known(fields)
    if (isPythonException(tag)) return tag
  }
  if (error instanceof Error) {
    const name = error.name
    if (isPythonException(name)) return name
    const code = fields["code"]
    if (typeof code === "string" && byCode[code] !== undefined) return byCode[code]
    if (byJsName[name] !== undefined) return byJsName[name]
    if (typeof code === "string" && typeof fields["syscall"] === "string") return "OSError"
  }
  return "Exception"
}

/**
 * The JS name an error goes by, kept in `contents.name` for an error without a `_tag` (so a TS caller still sees
 * `RangeError` or `QuotaExceeded` after the class became a Python one).
 *
 * @internal
 */
export const jsName = (error: unknown): string | undefined => {
  if (!(error instanceof Error)) return undefined
  // A subclass that does not set `name` still says what it is through its constructor.
  const ctor = (error as { constructor?: { name?: unknown } }).constructor?.name
  if (error.name === "Error" && typeof ctor === "string" && ctor !== "") return ctor
  return error.name === "" ? undefined : error.name
}
