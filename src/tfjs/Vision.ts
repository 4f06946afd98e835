/**
 * Vision helpers for remote functions: decoding request images (JPEG, PNG, in pure JS), COCO object detection with
 * CenterNet, single-person pose with MoveNet Lightning and batched face anti-spoofing scores (the graph models
 * `@vladmandic/human` ships), and the Schemas of their results. Inference runs inside `tf.tidy` and returns plain numbers, so a call leaves no tensor behind.
 *
 * @example
 * ```ts
 * const detect = Remote.make("detect", {
 *   payload: Schema.Struct({ image: Schema.Uint8ArrayFromSelf }),
 *   success: Schema.Array(Vision.Detection),
 *   error: WorkerError.ImageInvalid
 * }, ({ image }) =>
 *   Effect.gen(function*() {
 *     const rgb = yield* Vision.decodeImage(image)
 *     return yield* Vision.detect(yield* Centernet, rgb, { minScore: 0.3 })
 *   }))
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { ImageInvalid } from "../WorkerError.js"
import * as image from "./internal/image.js"
import * as vision from "./internal/vision.js"
import { Backend } from "./Tfjs.js"

/** The 80 COCO class names, indexed by the class id CenterNet outputs (0 is `person`). */
export const cocoLabels = vision.cocoLabels

/** MoveNet's 17 keypoint names, in the order of its output rows. */
export const movenetKeypoints = vision.movenetKeypoints

/** A decoded image: `data` holds `width * height * 3` bytes, row by row, R G B for each pixel. */
export type RgbImage = image.RgbImage

/** A box in source-image pixels, from its top-left corner. */
export const Box = Schema.Struct({
  x: Schema.Number,
  y: Schema.Number,
  width: Schema.Number,
  height: Schema.Number
})

/** A box in source-image pixels. */
export interface Box extends Schema.Schema.Type<typeof Box> {}

/** One detected object: its COCO label and class id, a score in 0..1, and its box. */
export const Detection = Schema.Struct({
  label: Schema.Literal(...vision.cocoLabels),
  classId: Schema.Int,
  score: Schema.Number,
  box: Box
})

/** One detected object. */
export interface Detection extends Schema.Schema.Type<typeof Detection> {}

/** One pose keypoint in source-image pixels, with its score in 0..1. */
export const Keypoint = Schema.Struct({
  name: Schema.Literal(...vision.movenetKeypoints),
  x: Schema.Number,
  y: Schema.Number,
  score: Schema.Number
})

/** One pose keypoint. */
export interface Keypoint extends Schema.Schema.Type<typeof Keypoint> {}

/** Options of {@link decodeImage}. */
export interface DecodeOptions {
  /** The largest image accepted, in megapixels (default 40), checked from the header before decoding. */
  readonly maxResolutionInMP?: number
}

/**
 * Decodes JPEG or PNG bytes (told apart by their magic bytes) to RGB. Other bytes, images over the resolution limit
 * and corrupt files fail with `ImageInvalid`, the error a remote declares so that the caller learns what was expected.
 */
export const decodeImage = (bytes: Uint8Array, options?: DecodeOptions): Effect.Effect<RgbImage, ImageInvalid> =>
  Effect.mapError(image.decodeImage(bytes, options), (e) => new ImageInvalid({ reason: e.reason, message: e.message }))

/** Options of {@link detect}; the defaults are human's. */
export interface DetectOptions {
  /** Detections scoring below are dropped (default 0.2). */
  readonly minScore?: number
  /** At most this many detections, best first (default 10). */
  readonly maxResults?: number
  /** Overlap above which the weaker of two boxes is dropped, whatever their classes (default 0.4). */
  readonly iouThreshold?: number
}

/** What {@link detect} and {@link pose} need of a model: a `Tfjs.GraphModel` fits. */
export type VisionModel = vision.VisionModel

/**
 * Detects COCO objects with CenterNet (input [1, 512, 512, 3] float32): the image is stretched to the input, the
 * model's 100 candidates go through class-agnostic non-max suppression, and the boxes come back in source pixels,
 * best first.
 */
export const detect = (
  model: VisionModel,
  rgb: RgbImage,
  options?: DetectOptions
): Effect.Effect<Array<Detection>, never, Backend> =>
  Effect.flatMap(Backend, ({ tf }) => Effect.sync(() => vision.detect(tf, model, rgb, options)))

/**
 * Estimates one person's pose with MoveNet Lightning (input [1, 192, 192, 3] int32): the image is padded to a centred
 * square, and all 17 keypoints come back in {@link movenetKeypoints} order in source pixels; filter on `score`.
 */
export const pose = (model: VisionModel, rgb: RgbImage): Effect.Effect<Array<Keypoint>, never, Backend> =>
  Effect.flatMap(Backend, ({ tf }) => Effect.sync(() => vision.pose(tf, model, rgb)))

/**
 * Anti-spoofing scores (0..1, higher: more likely a real face) of face images, with the model human ships (input
 * [N, 128, 128, 3]): the images go through the model as one batch, and the scores come back in their order. Made for
 * a batched remote (`Remote.make` with `batch`), whose handler gets the images of concurrent calls at once.
 *
 * @example
 * ```ts
 * const real = Remote.make("real", {
 *   payload: Schema.Struct({ image: Schema.Uint8ArrayFromSelf }),
 *   success: Schema.Number,
 *   batch: { maxSize: 8, maxWait: "5 millis" }
 * }, (payloads) => Effect.flatMap(Effect.forEach(payloads, (p) => Vision.decodeImage(p.image)), (images) =>
 *   Effect.flatMap(Antispoof, (model) => Vision.antispoof(model, images))))
 * ```
 */
export const antispoof = (
  model: VisionModel,
  images: ReadonlyArray<RgbImage>
): Effect.Effect<Array<number>, never, Backend> =>
  Effect.flatMap(Backend, ({ tf }) => Effect.sync(() => vision.antispoof(tf, model, images)))
