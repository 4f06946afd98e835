/**
 * The `square` remote's definition alone: its name and Schemas, no handler. A client imports this small module
 * (`WorkerClient.make([square], ...)`) instead of the worker's code; examples/square.ts implements it.
 */
import { Schema } from "effect"
import { Remote } from "effect-deployments"

/** `square(x) = x * x`, as callers see it. */
export const square = Remote.define("square", {
  payload: Schema.Struct({ x: Schema.Number }),
  success: Schema.Number
})
