/**
 * Checking one configuration setting: an option given in code, else an environment variable, else a default. A value
 * that does not pass is a `ConfigError` naming the option or the variable, the value it got and what is allowed, e.g.
 * `(Invalid data at WORKER_MAX_BODY_SIZE: "got "-5"; expected a whole number of bytes from 1 to 268435456")`.
 */
import { Config, ConfigError, Duration, Effect, Option } from "effect"
import * as Crypto from "node:crypto"

/** A check: what is allowed, in words, and the parsed value (undefined when it is not allowed). */
export interface Check<A> {
  readonly expected: string
  readonly parse: (value: unknown) => A | undefined
}

/** The longest Node timer (about 24.8 days): a longer `setTimeout` fires at once. */
export const MAX_TIMER_MILLIS = 2 ** 31 - 1

/** A value as an error message shows it: strings quoted, long ones cut. */
export const show = (value: unknown): string => {
  if (Duration.isDuration(value)) return Duration.format(value)
  let text: string
  try {
    text = typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value))
  } catch {
    text = String(value)
  }
  return text.length > 80 ? `${text.slice(0, 80)}... (${text.length} characters)` : text
}

/** The error for a value `name` may not have. */
export const invalid = (name: string, value: unknown, expected: string, detail?: string): ConfigError.ConfigError =>
  ConfigError.InvalidData(
    [name],
    `got ${show(value)}${detail === undefined ? "" : ` (${detail})`}; expected ${expected}`
  )

/** An environment variable as a trimmed string; unset and blank are both `undefined`. */
export const env = (name: string): Config.Config<string | undefined> =>
  Config.option(Config.string(name)).pipe(
    Config.map((o) => (Option.isSome(o) && o.value.trim() !== "" ? o.value.trim() : undefined))
  )

/**
 * One setting: `option` when given (named `optionName`), else `envValue` when set (named `envName`), else undefined.
 * Each is parsed by `check`; the first that does not pass fails, naming itself.
 */
export const pick = <A>(
  check: Check<A>,
  names: { readonly option: string; readonly env?: string | undefined },
  option: unknown,
  envValue: string | undefined
): Effect.Effect<A | undefined, ConfigError.ConfigError> => {
  const [name, value] =
    option !== undefined
      ? [names.option, option]
      : envValue !== undefined
        ? [names.env!, envValue]
        : [undefined, undefined]
  if (name === undefined) return Effect.succeed(undefined)
  const parsed = check.parse(value)
  return parsed === undefined ? Effect.fail(invalid(name, value, check.expected)) : Effect.succeed(parsed)
}

const MiB = 1024 * 1024

const bytesText = (n: number) => (n % MiB === 0 ? `${n} (${n / MiB} MiB)` : String(n))

/** A whole number from `min` to `max`; from the environment, its decimal digits. */
export const integer = (min: number, max: number, what: string, bytes = false): Check<number> => ({
  expected: `${what} from ${bytes ? bytesText(min) : min} to ${bytes ? bytesText(max) : max}`,
  parse: (value) => {
    const n = typeof value === "string" ? (/^[+-]?\d+$/.test(value) ? Number(value) : Number.NaN) : value
    return typeof n === "number" && Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined
  }
})

const isNegative = (value: unknown): boolean =>
  (typeof value === "number" && value < 0) ||
  (typeof value === "bigint" && value < 0n) ||
  (typeof value === "string" && value.trim().startsWith("-")) ||
  (Array.isArray(value) && value.some((v) => typeof v === "number" && v < 0))

/**
 * A duration: in code any `Duration.DurationInput` (a number is milliseconds), from the environment a number and a
 * unit (`"30 seconds"`, `"500 millis"`, `"2 minutes"`). Finite, at most {@link MAX_TIMER_MILLIS}; at least a
 * millisecond unless `zero` allows 0.
 */
export const duration = (options: { readonly zero?: boolean } = {}): Check<Duration.Duration> => ({
  expected:
    `a duration such as "30 seconds" or "500 millis", ${options.zero === true ? "0 or more" : "1 millisecond or more"}` +
    ` and at most 24 days`,
  parse: (value) => {
    if (isNegative(value)) return undefined
    const decoded = Duration.decodeUnknown(value)
    if (Option.isNone(decoded)) return undefined
    const d = decoded.value
    if (!Duration.isFinite(d) || Duration.toMillis(d) > MAX_TIMER_MILLIS) return undefined
    return options.zero !== true && Duration.toMillis(d) < 1 ? undefined : d
  }
})

/** One of the given words. */
export const literal = <const L extends string>(...values: ReadonlyArray<L>): Check<L> => ({
  expected: `one of ${values.map((v) => `"${v}"`).join(", ")}`,
  parse: (value) => (values.includes(value as L) ? (value as L) : undefined)
})

/** A boolean; from the environment `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`). */
export const boolean: Check<boolean> = {
  expected: "true or false",
  parse: (value) => {
    if (typeof value === "boolean") return value
    if (typeof value !== "string") return undefined
    const v = value.toLowerCase()
    return ["true", "1", "yes", "on"].includes(v) ? true : ["false", "0", "no", "off"].includes(v) ? false : undefined
  }
}

/** A boolean given in code (no words). */
export const strictBoolean: Check<boolean> = {
  expected: "true or false",
  parse: (value) => (typeof value === "boolean" ? value : undefined)
}

/** A string with something in it other than white space. */
export const nonEmpty = (what: string): Check<string> => ({
  expected: what,
  parse: (value) => (typeof value === "string" && value.trim() !== "" ? value : undefined)
})

/** An `http:` or `https:` URL. */
export const httpUrl: Check<string> = {
  expected: "an http:// or https:// URL",
  parse: (value) => {
    if (typeof value !== "string") return undefined
    try {
      const url = new URL(value)
      return url.protocol === "http:" || url.protocol === "https:" ? value : undefined
    } catch {
      return undefined
    }
  }
}

/**
 * A public key in PEM (`-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----`), checked by parsing it, so a
 * bad key fails at start-up naming where it came from instead of on the first call.
 */
export const publicKeyPem = (name: string, value: unknown): Effect.Effect<string, ConfigError.ConfigError> => {
  const expected = "an RSA public key in PEM (-----BEGIN PUBLIC KEY----- ...)"
  if (typeof value !== "string" || value.trim() === "") return Effect.fail(invalid(name, value, expected))
  // Environments often carry a PEM on one line with literal "\n" for its line breaks.
  const pem = value.includes("\\n") && !value.includes("\n") ? value.replace(/\\n/g, "\n") : value
  try {
    const key = Crypto.createPublicKey(pem)
    if (key.asymmetricKeyType !== "rsa") {
      return Effect.fail(invalid(name, value, expected, `a ${key.asymmetricKeyType ?? "non-RSA"} key`))
    }
    return Effect.succeed(pem)
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e)
    return Effect.fail(invalid(name, value, expected, `not a public key: ${reason}`))
  }
}
