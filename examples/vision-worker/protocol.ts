/**
 * What the vision worker's main thread asks its threads: `Detect`, `Pose` and `Antispoof`, each with the image bytes
 * (moved to the thread, not copied) and its typed answer. Imported by both sides: app.ts (main thread) and thread.ts.
 */
import { Schema } from "effect"
// Imported by the threads too: the thread subpath keeps the server and the client out of them
import { ThreadedContext, WorkerError } from "effect-deployments/thread"
import { Vision } from "effect-deployments/tfjs"

/** Decode `image`, run CenterNet, return the labelled boxes in source pixels, best first. */
export class Detect extends Schema.TaggedRequest<Detect>()("Detect", {
  payload: {
    image: ThreadedContext.Bytes,
    minScore: Schema.optional(Schema.Number),
    maxResults: Schema.optional(Schema.Number)
  },
  success: Schema.Array(Vision.Detection),
  failure: WorkerError.ImageInvalid
}) {}

/** Decode `image`, run MoveNet, return the 17 keypoints of the main person in source pixels. */
export class Pose extends Schema.TaggedRequest<Pose>()("Pose", {
  payload: { image: ThreadedContext.Bytes },
  success: Schema.Array(Vision.Keypoint),
  failure: WorkerError.ImageInvalid
}) {}

/**
 * Decode each image and score the good ones with the anti-spoofing model as one batch: one result per image, in
 * order, `ImageInvalid` for an image that does not decode (it fails only its own caller).
 */
export class Antispoof extends Schema.TaggedRequest<Antispoof>()("Antispoof", {
  payload: { images: Schema.Array(ThreadedContext.Bytes) },
  success: Schema.Array(Schema.Either({ right: Schema.Number, left: WorkerError.ImageInvalid })),
  failure: Schema.Never
}) {}

/** Every request a vision thread serves. */
export const VisionRequest = Schema.Union(Detect, Pose, Antispoof)

/** Every request a vision thread serves. */
export type VisionRequest = Schema.Schema.Type<typeof VisionRequest>
