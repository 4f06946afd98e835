/**
 * Schema issues as bounded field issues: what a 400 body may echo of a bad payload.
 *
 * `ParseResult.ArrayFormatter` alone formats every issue, each with the whole offending value (`actual`) written out
 * by a recursive formatter: a megabyte string comes back as a megabyte message (twice, with the error's message), a
 * long array of bad items as as many issues, and a deeply nested value overflows the stack. Here the issue tree is
 * first rebuilt with at most `maxIssues` leaves, each `actual` replaced by a short preview written without recursion;
 * only then does the ArrayFormatter run, and its messages and path segments are cut to length.
 *
 * @internal
 */
import { ParseResult } from "effect"
import type { SchemaAST as AST } from "effect"

/** Limits of {@link formatIssues}. @internal */
export interface Limits {
  /** Issues listed; past it, one last issue says that more were left out. Default 20. */
  readonly maxIssues?: number
  /** Characters of one message. Default 400. */
  readonly maxMessageLength?: number
  /** Characters of the preview of an offending value inside a message. Default 80. */
  readonly maxValueLength?: number
}

/** One issue: where (a path into the payload) and what. @internal */
export interface Issue {
  readonly path: Array<string | number>
  readonly message: string
}

/** @internal */
export const defaultLimits = { maxIssues: 20, maxMessageLength: 400, maxValueLength: 80 } as const

/** The message of the last issue when some were left out. @internal */
export const moreIssuesMessage = (maxIssues: number): string =>
  `more issues not shown (at most ${maxIssues} are listed)`

/** Path segments over this length are cut (an unexpected key is the client's, of any length). */
const maxSegmentLength = 64

/** Nesting of the issue tree followed; deeper parts are summarised in one issue. */
const maxIssueDepth = 256

/**
 * A value shown in a message by its preview: `Inspectable.formatUnknown`, which ArrayFormatter uses, prints an object
 * with its own `toString` through it, so the preview is what appears after "actual".
 */
class Preview {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text
  }
}

const cut = (s: string, max: number): string => (s.length <= max ? s : `${s.slice(0, max)}...`)

const constructorName = (u: object): string | undefined => {
  const proto = Object.getPrototypeOf(u) as { constructor?: { name?: unknown } } | null
  const name = proto?.constructor?.name
  return typeof name === "string" && name !== "Object" && name !== "" ? name : undefined
}

/**
 * A one-line rendering of a value in at most about `budget` characters, in the form ArrayFormatter gives small JSON
 * values (`{"a":1,"b":[1,2]}`), without recursion: an explicit stack of what is left to write, abandoned once the
 * budget is spent. Strings longer than the budget are cut and say their length; binary data and other objects are
 * named, not listed. Never throws (a getter or proxy that throws ends the preview).
 */
export const preview = (value: unknown, budget: number): string => {
  let out = ""
  const todo: Array<{ readonly value: unknown } | string> = [{ value }]
  try {
    while (todo.length > 0 && out.length <= budget) {
      const next = todo.pop()!
      if (typeof next === "string") {
        out += next
        continue
      }
      const v = next.value
      switch (typeof v) {
        case "string":
          out +=
            v.length <= budget ? JSON.stringify(v) : `${JSON.stringify(v.slice(0, budget))}... (${v.length} characters)`
          continue
        case "number":
        case "boolean":
        case "undefined":
          out += String(v)
          continue
        case "bigint":
          out += `${v}n`
          continue
        case "symbol":
          out += v.toString()
          continue
        case "function":
          out += `[function ${v.name || "(anonymous)"}]`
          continue
      }
      if (v === null) {
        out += "null"
        continue
      }
      if (ArrayBuffer.isView(v)) {
        out += `${constructorName(v) ?? "binary"}(${v.byteLength} bytes)`
        continue
      }
      if (v instanceof Map || v instanceof Set) {
        out += `${v instanceof Map ? "Map" : "Set"}(${v.size} entries)`
        continue
      }
      if (v instanceof Date) {
        out += Number.isNaN(v.getTime()) ? "Invalid Date" : v.toISOString()
        continue
      }
      if (Array.isArray(v)) {
        // Each item takes a character at least: no more than the budget can be shown.
        const shown = Math.min(v.length, budget)
        todo.push(shown < v.length ? `,... (${v.length} items)]` : "]")
        for (let i = shown - 1; i >= 0; i--) {
          todo.push({ value: v[i] })
          if (i > 0) todo.push(",")
        }
        out += "["
        continue
      }
      const name = constructorName(v as object)
      const keys = Object.keys(v as object)
      const shown = Math.min(keys.length, budget)
      todo.push(shown < keys.length ? `,... (${keys.length} keys)}` : "}")
      for (let i = shown - 1; i >= 0; i--) {
        todo.push({ value: (v as Record<string, unknown>)[keys[i]!] })
        todo.push(`${JSON.stringify(cut(keys[i]!, maxSegmentLength))}:`)
        if (i > 0) todo.push(",")
      }
      out += name === undefined ? "{" : `${name} {`
    }
  } catch {
    return out.length === 0 ? "(a value that cannot be shown)" : `${cut(out, budget)}...`
  }
  if (todo.length === 0) return out // written in full (it may pass the budget by the note of its last string)
  // Cut short: "..." and how big the value was.
  const size = Array.isArray(value)
    ? ` (an array of ${value.length} items)`
    : typeof value === "object" && value !== null
      ? ` (an object of ${Object.keys(value).length} keys)`
      : ""
  return `${out.slice(0, budget)}...${size}`
}

/** The value as the rebuilt issue carries it: short scalars as they are (the message is unchanged), else a preview. */
const shown = (actual: unknown, budget: number): unknown => {
  switch (typeof actual) {
    case "number":
    case "boolean":
    case "undefined":
    case "bigint":
    case "symbol":
      return actual
    case "string":
      return actual.length <= budget ? actual : new Preview(preview(actual, budget))
  }
  return actual === null ? null : new Preview(preview(actual, budget))
}

interface Budget {
  leaves: number
  truncated: boolean
}

const leaf = (issue: ParseResult.ParseIssue, budget: Budget, valueLength: number): ParseResult.ParseIssue => {
  budget.leaves--
  switch (issue._tag) {
    case "Type":
      return new ParseResult.Type(issue.ast, shown(issue.actual, valueLength), issue.message)
    case "Forbidden":
      return new ParseResult.Forbidden(issue.ast, shown(issue.actual, valueLength), issue.message)
    case "Unexpected":
      return new ParseResult.Unexpected(shown(issue.actual, valueLength), issue.message)
    default:
      return issue
  }
}

/** A stand-in for what the limits left out of a branch (a message of its own, so the formatter does not descend). */
const leftOut = (ast: AST.AST, actual: unknown, valueLength: number, why: string) =>
  new ParseResult.Type(ast, shown(actual, valueLength), why)

/** The issue tree with at most `budget.leaves` leaves and previews for values, or undefined when nothing fits. */
const rebuild = (
  issue: ParseResult.ParseIssue,
  budget: Budget,
  valueLength: number,
  depth: number
): ParseResult.ParseIssue | undefined => {
  if (budget.leaves <= 0) {
    budget.truncated = true
    return undefined
  }
  switch (issue._tag) {
    case "Type":
    case "Forbidden":
    case "Unexpected":
    case "Missing":
      return leaf(issue, budget, valueLength)
  }
  if (depth >= maxIssueDepth) {
    budget.leaves--
    const ast = issue._tag === "Pointer" ? undefined : issue.ast
    return ast === undefined
      ? new ParseResult.Unexpected(shown(issue.actual, valueLength), "nested too deep to list its issues")
      : leftOut(ast, issue.actual, valueLength, "nested too deep to list its issues")
  }
  const actual = shown(issue.actual, valueLength)
  switch (issue._tag) {
    case "Pointer": {
      const inner = rebuild(issue.issue, budget, valueLength, depth + 1)
      return inner === undefined ? undefined : new ParseResult.Pointer(issue.path, actual, inner)
    }
    case "Refinement": {
      const inner = rebuild(issue.issue, budget, valueLength, depth + 1)
      return inner === undefined ? undefined : new ParseResult.Refinement(issue.ast, actual, issue.kind, inner)
    }
    case "Transformation": {
      const inner = rebuild(issue.issue, budget, valueLength, depth + 1)
      return inner === undefined ? undefined : new ParseResult.Transformation(issue.ast, actual, issue.kind, inner)
    }
    case "Composite": {
      const children = Array.isArray(issue.issues) ? issue.issues : [issue.issues as ParseResult.ParseIssue]
      const kept: Array<ParseResult.ParseIssue> = []
      for (const child of children) {
        const rebuilt = rebuild(child, budget, valueLength, depth + 1)
        if (rebuilt === undefined) break
        kept.push(rebuilt)
      }
      if (kept.length === 0) return undefined
      return new ParseResult.Composite(issue.ast, actual, kept.length === 1 ? kept[0]! : (kept as [any, ...Array<any>]))
    }
  }
}

const segment = (key: PropertyKey): string | number =>
  typeof key === "number" ? key : typeof key === "string" ? cut(key, maxSegmentLength) : cut(String(key), 64)

/**
 * The issues of a failed decode, bounded: at most `maxIssues` (then one saying more were left out), each message at
 * most `maxMessageLength` characters, each offending value previewed in at most about `maxValueLength`, each path
 * segment at most 64 characters. Small values read as ArrayFormatter writes them: `Expected number, actual "five"`.
 *
 * @internal
 */
export const formatIssues = (
  error: ParseResult.ParseError | ParseResult.ParseIssue,
  limits: Limits = {}
): Array<Issue> => {
  const maxIssues = Math.max(1, limits.maxIssues ?? defaultLimits.maxIssues)
  const maxMessageLength = limits.maxMessageLength ?? defaultLimits.maxMessageLength
  const valueLength = limits.maxValueLength ?? defaultLimits.maxValueLength
  const budget: Budget = { leaves: maxIssues, truncated: false }
  const root = error._tag === "ParseError" ? error.issue : error
  const bounded = rebuild(root, budget, valueLength, 0)
  const issues: Array<Issue> =
    bounded === undefined
      ? []
      : ParseResult.ArrayFormatter.formatIssueSync(bounded)
          .slice(0, maxIssues)
          .map((i) => ({ path: i.path.map(segment), message: cut(i.message, maxMessageLength) }))
  if (budget.truncated) issues.push({ path: [], message: moreIssuesMessage(maxIssues) })
  return issues
}
