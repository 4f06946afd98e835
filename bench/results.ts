/**
 * Where every benchmark writes its figures: bench/results/<name>.json, the machine they were measured on first (the
 * machine is shared, so a figure means little without it), then the bench's own fields in its own order.
 *
 *   const file = Results.write("invoke", { loadavg: Os.loadavg(), ... })
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** The directory the results are written to: bench/results/ beside this file. */
export const dir = Path.join(import.meta.dirname, "results")

/** The machine a figure was measured on, recorded beside it: when, which node, how many cores of which model. */
export const machine = () => ({
  date: new Date().toISOString(),
  node: process.version,
  cpus: Os.cpus().length,
  cpuModel: Os.cpus()[0]?.model
})

/**
 * Write `figures` (after the `machine` fields) to bench/results/<name>.json, creating the directory if needed;
 * returns the file's path.
 *
 * @example
 * const file = Results.write(only === undefined ? "vision" : `vision-${only}`, result)
 * console.log(`wrote ${Path.relative(process.cwd(), file)}`)
 */
export const write = (name: string, figures: Record<string, unknown>): string => {
  const file = Path.join(dir, `${name}.json`)
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(file, JSON.stringify({ ...machine(), ...figures }, null, 2) + "\n")
  return file
}
