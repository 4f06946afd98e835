/**
 * Pre- and post-processing for the vision models that `@vladmandic/human` ships: the CenterNet COCO object detector
 * and MoveNet Lightning single-person pose. Each call runs inside `tf.tidy` and returns plain numbers, so it leaves
 * no tensor behind.
 *
 * @internal
 */
import type { GraphModel } from "@tensorflow/tfjs-converter"
import type * as TfCore from "@tensorflow/tfjs-core"
import type { Tf } from "./backend.js"
import type { RgbImage } from "./image.js"

/**
 * The 80 COCO object classes, indexed by the class id CenterNet outputs (0 is `person`; the ids are 0-based and
 * contiguous, unlike COCO's own 1..90 category ids).
 */
export const cocoLabels = [
  "person",
  "bicycle",
  "car",
  "motorcycle",
  "airplane",
  "bus",
  "train",
  "truck",
  "boat",
  "traffic light",
  "fire hydrant",
  "stop sign",
  "parking meter",
  "bench",
  "bird",
  "cat",
  "dog",
  "horse",
  "sheep",
  "cow",
  "elephant",
  "bear",
  "zebra",
  "giraffe",
  "backpack",
  "umbrella",
  "handbag",
  "tie",
  "suitcase",
  "frisbee",
  "skis",
  "snowboard",
  "sports ball",
  "kite",
  "baseball bat",
  "baseball glove",
  "skateboard",
  "surfboard",
  "tennis racket",
  "bottle",
  "wine glass",
  "cup",
  "fork",
  "knife",
  "spoon",
  "bowl",
  "banana",
  "apple",
  "sandwich",
  "orange",
  "broccoli",
  "carrot",
  "hot dog",
  "pizza",
  "donut",
  "cake",
  "chair",
  "couch",
  "potted plant",
  "bed",
  "dining table",
  "toilet",
  "tv",
  "laptop",
  "mouse",
  "remote",
  "keyboard",
  "cell phone",
  "microwave",
  "oven",
  "toaster",
  "sink",
  "refrigerator",
  "book",
  "clock",
  "vase",
  "scissors",
  "teddy bear",
  "hair drier",
  "toothbrush"
] as const

/**
 * A COCO class name.
 */
export type CocoLabel = (typeof cocoLabels)[number]

/**
 * MoveNet's 17 keypoints, in the order of its output rows.
 */
export const movenetKeypoints = [
  "nose",
  "leftEye",
  "rightEye",
  "leftEar",
  "rightEar",
  "leftShoulder",
  "rightShoulder",
  "leftElbow",
  "rightElbow",
  "leftWrist",
  "rightWrist",
  "leftHip",
  "rightHip",
  "leftKnee",
  "rightKnee",
  "leftAnkle",
  "rightAnkle"
] as const

/**
 * A MoveNet keypoint name.
 */
export type KeypointName = (typeof movenetKeypoints)[number]

/**
 * What these functions need of a model: a `GraphModel` fits, and so does a test double.
 */
export type VisionModel = Pick<GraphModel, "execute" | "inputs">

/**
 * A box in source-image pixels, from its top-left corner.
 */
export interface Box {
  readonly x: number
  readonly y: number
  readonly width: number
  readonly height: number
}

/**
 * One detected object.
 */
export interface Detection {
  readonly label: CocoLabel
  readonly classId: number
  readonly score: number
  readonly box: Box
}

/**
 * Options of {@link detect}; the defaults are human's.
 */
export interface DetectOptions {
  /** Detections scoring below are dropped (default 0.2). */
  readonly minScore?: number
  /** At most this many detections, best first (default 10). */
  readonly maxResults?: number
  /** Overlap above which the weaker of two boxes is dropped, whatever their classes (default 0.4). */
  readonly iouThreshold?: number
}

/**
 * One pose keypoint, in source-image pixels.
 */
export interface Keypoint {
  readonly name: KeypointName
  readonly x: number
  readonly y: number
  readonly score: number
}

/** CenterNet's decoded output ([1, 100, 6]); the other two outputs are the raw heatmaps it is decoded from. */
const centernetOutput = "tower_0/detections"

/** The model's input height and width, from its signature, else the given default. */
const inputSize = (model: VisionModel, fallback: number): readonly [number, number] => {
  const shape = model.inputs[0]?.shape
  const height = shape?.[1] ?? -1
  const width = shape?.[2] ?? -1
  return [height > 0 ? height : fallback, width > 0 ? width : fallback]
}

const single = (out: TfCore.Tensor | Array<TfCore.Tensor>): TfCore.Tensor => {
  const tensor = Array.isArray(out) ? out[0] : out
  if (tensor === undefined) throw new Error("the model returned no output")
  return tensor
}

const clamp = (value: number, max: number): number => Math.min(Math.max(value, 0), max)

const imageTensor = (tf: Tf, rgb: RgbImage): TfCore.Tensor3D => {
  if (rgb.data.length !== rgb.width * rgb.height * 3) {
    throw new Error(
      `an RGB image of ${rgb.width}x${rgb.height} needs ${rgb.width * rgb.height * 3} bytes, got ${rgb.data.length}`
    )
  }
  return tf.tensor3d(rgb.data, [rgb.height, rgb.width, 3], "int32")
}

/**
 * Detects COCO objects with the CenterNet graph model. The image is stretched to the model's input (512x512) as
 * float pixel values 0..255, without normalisation, as human does; the model decodes its heatmaps into 100
 * candidate rows `[x1, y1, x2, y2, score, classId]` in input pixels, and class-agnostic non-max suppression keeps
 * the best. Boxes come back in source pixels, clamped to the image.
 *
 * @example
 * const people = detect(tf, centernet, rgb, { minScore: 0.3 }).filter((d) => d.label === "person")
 */
export const detect = (tf: Tf, model: VisionModel, rgb: RgbImage, options?: DetectOptions): Array<Detection> => {
  const minScore = options?.minScore ?? 0.2
  const maxResults = options?.maxResults ?? 10
  const iouThreshold = options?.iouThreshold ?? 0.4
  const [height, width] = inputSize(model, 512)
  const { rows, keep } = tf.tidy(() => {
    const resized = tf.image.resizeBilinear(imageTensor(tf, rgb), [height, width])
    const rows = tf.reshape(single(model.execute(tf.expandDims(resized, 0), centernetOutput)), [-1, 6])
    const [x1, y1, x2, y2, score] = tf.split(rows, 6, 1)
    // nonMaxSuppression wants corners as [y1, x1, y2, x2]
    const boxes = tf.concat([y1!, x1!, y2!, x2!], 1) as TfCore.Tensor2D
    const kept = tf.image.nonMaxSuppression(boxes, tf.reshape(score!, [-1]), maxResults, iouThreshold, minScore)
    return { rows: rows.dataSync() as Float32Array, keep: kept.dataSync() as Int32Array }
  })
  const scaleX = rgb.width / width
  const scaleY = rgb.height / height
  const detections: Array<Detection> = []
  for (const index of keep) {
    const at = index * 6
    const classId = Math.round(rows[at + 5] ?? Number.NaN)
    const label = cocoLabels[classId]
    if (label === undefined) continue
    const left = Math.round(clamp((rows[at] ?? 0) * scaleX, rgb.width))
    const top = Math.round(clamp((rows[at + 1] ?? 0) * scaleY, rgb.height))
    const right = Math.round(clamp((rows[at + 2] ?? 0) * scaleX, rgb.width))
    const bottom = Math.round(clamp((rows[at + 3] ?? 0) * scaleY, rgb.height))
    detections.push({
      label,
      classId,
      score: rows[at + 4] ?? 0,
      box: { x: left, y: top, width: right - left, height: bottom - top }
    })
  }
  return detections
}

/**
 * Estimates one person's pose with MoveNet Lightning. The image is padded to a centred square (so the person is not
 * stretched), resized to the model's input (192x192) and cast to int32 pixel values 0..255; the model returns 17 rows
 * `[y, x, score]` normalised to that square, mapped back here to source pixels. All 17 keypoints come back in
 * {@link movenetKeypoints} order; filter on `score` (human keeps those above 0.3).
 *
 * @example
 * const visible = pose(tf, movenet, rgb).filter((k) => k.score > 0.3)
 */
export const pose = (tf: Tf, model: VisionModel, rgb: RgbImage): Array<Keypoint> => {
  const [height, width] = inputSize(model, 192)
  const side = Math.max(rgb.width, rgb.height)
  const padX = Math.floor((side - rgb.width) / 2)
  const padY = Math.floor((side - rgb.height) / 2)
  const dtype = model.inputs[0]?.dtype ?? "int32"
  const values = tf.tidy(() => {
    const padded = tf.pad(imageTensor(tf, rgb), [
      [padY, side - rgb.height - padY],
      [padX, side - rgb.width - padX],
      [0, 0]
    ])
    const input = tf.cast(tf.expandDims(tf.image.resizeBilinear(padded, [height, width]), 0), dtype)
    return single(model.execute(input)).dataSync() as Float32Array
  })
  return movenetKeypoints.map((name, i) => ({
    name,
    x: (values[i * 3 + 1] ?? 0) * side - padX,
    y: (values[i * 3] ?? 0) * side - padY,
    score: values[i * 3 + 2] ?? 0
  }))
}

/**
 * Scores how likely each image shows a real face rather than a photo or a screen of one, with the anti-spoofing model
 * human ships (input [N, 128, 128, 3] float 0..1, output [N, 1]; human feeds it face crops and reports the score as
 * `real`). Each image is stretched to the model's input and the whole batch runs as one model invocation: the
 * model's batch dimension is free, so N images cost one call. Scores come back in the images' order.
 *
 * @example
 * const [a, b] = antispoof(tf, model, [faceA, faceB])
 */
export const antispoof = (tf: Tf, model: VisionModel, images: ReadonlyArray<RgbImage>): Array<number> => {
  if (images.length === 0) return []
  const [height, width] = inputSize(model, 128)
  const scores = tf.tidy(() => {
    const batch = tf.stack(images.map((rgb) => tf.image.resizeBilinear(imageTensor(tf, rgb), [height, width])))
    return single(model.execute(tf.div(batch, 255))).dataSync() as Float32Array
  })
  if (scores.length !== images.length) {
    throw new Error(`the model gave ${scores.length} scores for ${images.length} images`)
  }
  return Array.from(scores)
}
