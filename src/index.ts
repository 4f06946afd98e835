/**
 * effect-deployments: an Effect-TS runtime for GPU inference workers.
 *
 * @since 0.1.0
 */
export { App, ContextNotFoundError } from "./App.js"
export * as Benchmark from "./Benchmark.js"
export * as Deployment from "./Deployment.js"
export * as Remote from "./Remote.js"
export * as Session from "./Session.js"
export * as ThreadedContext from "./ThreadedContext.js"
export * as Wire from "./Wire.js"
export * as Worker from "./Worker.js"
export * as WorkerClient from "./WorkerClient.js"
export * as WorkerContext from "./WorkerContext.js"
export * as WorkerError from "./WorkerError.js"
export * as WorkerTest from "./WorkerTest.js"
