import { describe, expect, it } from "@effect/vitest"
import { Either, ParseResult, Schema } from "effect"
import { formatIssues, moreIssuesMessage, preview } from "../src/internal/issues.js"

/** The ParseError of decoding `input` with every error, as the worker decodes payloads. */
const failure = <A, I>(schema: Schema.Schema<A, I>, input: unknown) => {
  const result = Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error" })(input)
  if (Either.isRight(result)) throw new Error("expected the decode to fail")
  return result.left
}

describe("formatIssues", () => {
  it("reads as ArrayFormatter for small values", () => {
    const schema = Schema.Struct({
      a: Schema.Number,
      b: Schema.Boolean,
      n: Schema.Int.pipe(Schema.between(1, 64)),
      o: Schema.optional(Schema.Struct({ x: Schema.String }))
    })
    const error = failure(schema, { a: "five", b: 1, n: 100, o: { x: [1, { y: null }] }, extra: true })
    const expected = ParseResult.ArrayFormatter.formatErrorSync(error).map((i) => ({
      path: [...i.path],
      message: i.message
    }))
    expect(formatIssues(error)).toEqual(expected)
    expect(formatIssues(error)).toContainEqual({ path: ["a"], message: 'Expected number, actual "five"' })
  })

  it("previews a megabyte string instead of echoing it", () => {
    const error = failure(Schema.Struct({ n: Schema.Number }), { n: "x".repeat(1_000_000) })
    const [issue, ...rest] = formatIssues(error)
    expect(rest).toEqual([])
    expect(issue!.message).toBe(`Expected number, actual "${"x".repeat(80)}"... (1000000 characters)`)
  })

  it("lists at most maxIssues issues, then says more were left out", () => {
    const error = failure(
      Schema.Array(Schema.Number),
      Array.from({ length: 100_000 }, () => "x")
    )
    const issues = formatIssues(error)
    expect(issues).toHaveLength(21)
    expect(issues.slice(0, 20).map((i) => i.path)).toEqual(Array.from({ length: 20 }, (_, i) => [i]))
    expect(issues[20]).toEqual({ path: [], message: moreIssuesMessage(20) })
    expect(formatIssues(error, { maxIssues: 3 })).toHaveLength(4)
    // Exactly at the limit: nothing said to be left out.
    const three = failure(Schema.Array(Schema.Number), ["a", "b", "c"])
    expect(formatIssues(three, { maxIssues: 3 }).map((i) => i.path)).toEqual([[0], [1], [2]])
  })

  it("previews deep, wide and binary values without recursion", () => {
    let deep: unknown = 1
    for (let i = 0; i < 100_000; i++) deep = [deep]
    const [issue] = formatIssues(failure(Schema.Struct({ s: Schema.String }), { s: deep }))
    expect(issue!.message).toMatch(/^Expected string, actual \[\[\[\[.*\.\.\. \(an array of 1 items\)$/)
    expect(issue!.message.length).toBeLessThan(200)
    const wide = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i]))
    const [wideIssue] = formatIssues(failure(Schema.Struct({ s: Schema.String }), { s: wide }))
    expect(wideIssue!.message).toContain("(an object of 10000 keys)")
    const [bytes] = formatIssues(failure(Schema.Struct({ s: Schema.String }), { s: new Uint8Array(1 << 20) }))
    expect(bytes!.message).toBe("Expected string, actual Uint8Array(1048576 bytes)")
  })

  it("cuts a long unexpected key in the path and a long message", () => {
    const key = "k".repeat(100_000)
    const [issue] = formatIssues(failure(Schema.Struct({ a: Schema.optional(Schema.Number) }), { [key]: 1 }))
    expect(issue!.path).toEqual([`${"k".repeat(64)}...`])
    expect(issue!.message.length).toBeLessThan(100)
    const Loud = Schema.String.annotations({ message: () => "no ".repeat(10_000) })
    const [loud] = formatIssues(failure(Schema.Struct({ s: Loud }), { s: 1 }))
    expect(loud!.message).toHaveLength(403)
  })
})

describe("preview", () => {
  it("writes small JSON values in full, as JSON", () => {
    expect(preview({ a: 1, b: [true, null, "x"] }, 80)).toBe('{"a":1,"b":[true,null,"x"]}')
    expect(preview([], 80)).toBe("[]")
    expect(preview(new Map([[1, 2]]), 80)).toBe("Map(1 entries)")
  })

  it("never throws: a getter that throws ends the preview", () => {
    const hostile = {
      get boom(): never {
        throw new Error("no")
      }
    }
    expect(preview({ a: 1, hostile }, 80)).toBe('{"a":1,"hostile":...')
    const revoked = Proxy.revocable({}, {})
    revoked.revoke()
    expect(preview(revoked.proxy, 80)).toBe("(a value that cannot be shown)")
  })
})
