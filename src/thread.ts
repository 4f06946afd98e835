/**
 * effect-deployments/thread: what the module a threaded context runs in each thread needs (`ThreadedContext.runner`,
 * `WorkerContext`, `WorkerError`), without the rest of the package. Every thread imports its module's whole graph
 * when it starts, once per thread: importing the root instead loads the HTTP server, the client and the rest into
 * every thread as well (about 35 more modules, which took a vision thread about 0.1 s longer to start from sources).
 *
 * @example
 * ```ts
 * // thread.ts
 * import { ThreadedContext } from "effect-deployments/thread"
 * export default ThreadedContext.runner(Embed, { contexts: [ModelLive], handlers: { Embed: ... } })
 * ```
 *
 * @since 0.1.0
 */
export * as ThreadedContext from "./ThreadedContext.js"
export * as WorkerContext from "./WorkerContext.js"
export * as WorkerError from "./WorkerError.js"
