/**
 * effect-deployments/tfjs: TensorFlow.js contexts (backend, graph and layers models) and vision helpers.
 *
 * @since 0.1.0
 */
export * as Tfjs from "./Tfjs.js"
export * as TfjsError from "./TfjsError.js"
export * as Vision from "./Vision.js"
