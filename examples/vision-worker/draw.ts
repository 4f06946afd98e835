/**
 * Drawing what the vision worker found on the image itself, so that a person can judge the detector by looking:
 * labelled boxes (label and score) and pose skeletons, on the decoded RGB pixels, written as a PNG with pngjs. No
 * canvas library: lines, rectangles, dots and a 5x7 bitmap font are a few dozen lines.
 */
import { PNG } from "pngjs"
import type { Vision } from "effect-deployments/tfjs"

type Rgb = readonly [number, number, number]

/** A picture being drawn on: RGB bytes, row by row (the layout `Vision.decodeImage` returns). */
export interface Canvas {
  readonly width: number
  readonly height: number
  readonly data: Uint8Array
}

/** A copy of an image to draw on. */
export const canvasOf = (image: Vision.RgbImage): Canvas => ({
  width: image.width,
  height: image.height,
  data: image.data.slice()
})

const put = (c: Canvas, x: number, y: number, [r, g, b]: Rgb): void => {
  if (x < 0 || y < 0 || x >= c.width || y >= c.height) return
  const i = (Math.floor(y) * c.width + Math.floor(x)) * 3
  c.data[i] = r
  c.data[i + 1] = g
  c.data[i + 2] = b
}

/** A filled rectangle. */
export const fillRect = (c: Canvas, x: number, y: number, w: number, h: number, color: Rgb): void => {
  for (let row = Math.max(0, Math.floor(y)); row < Math.min(c.height, y + h); row++) {
    for (let col = Math.max(0, Math.floor(x)); col < Math.min(c.width, x + w); col++) put(c, col, row, color)
  }
}

/** A rectangle's outline, `thickness` pixels wide, inside the box. */
export const strokeRect = (c: Canvas, x: number, y: number, w: number, h: number, color: Rgb, thickness = 3): void => {
  fillRect(c, x, y, w, thickness, color)
  fillRect(c, x, y + h - thickness, w, thickness, color)
  fillRect(c, x, y, thickness, h, color)
  fillRect(c, x + w - thickness, y, thickness, h, color)
}

/** A filled disc. */
export const dot = (c: Canvas, x: number, y: number, radius: number, color: Rgb): void => {
  for (let dy = -radius; dy <= radius; dy++) {
    for (let dx = -radius; dx <= radius; dx++) if (dx * dx + dy * dy <= radius * radius) put(c, x + dx, y + dy, color)
  }
}

/** A straight line, `thickness` pixels wide. */
export const line = (c: Canvas, x0: number, y0: number, x1: number, y1: number, color: Rgb, thickness = 3): void => {
  const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)))
  for (let i = 0; i <= steps; i++) {
    dot(c, x0 + ((x1 - x0) * i) / steps, y0 + ((y1 - y0) * i) / steps, thickness / 2, color)
  }
}

/** 5x7 glyphs, one string of 7 rows of 5 bits each; lower case is drawn as upper case. */
const font: Record<string, string> = {
  A: "01110100011000111111100011000110001",
  B: "11110100011000111110100011000111110",
  C: "01110100011000010000100001000101110",
  D: "11100100101000110001100011001011100",
  E: "11111100001000011110100001000011111",
  F: "11111100001000011110100001000010000",
  G: "01110100011000010111100011000101111",
  H: "10001100011000111111100011000110001",
  I: "01110001000010000100001000010001110",
  J: "00111000100001000010000101001001100",
  K: "10001100101010011000101001001010001",
  L: "10000100001000010000100001000011111",
  M: "10001110111010110101100011000110001",
  N: "10001100011100110101100111000110001",
  O: "01110100011000110001100011000101110",
  P: "11110100011000111110100001000010000",
  Q: "01110100011000110001101011001001101",
  R: "11110100011000111110101001001010001",
  S: "01111100001000001110000010000111110",
  T: "11111001000010000100001000010000100",
  U: "10001100011000110001100011000101110",
  V: "10001100011000110001100010101000100",
  W: "10001100011000110101101011010101010",
  X: "10001100010101000100010101000110001",
  Y: "10001100011000101010001000010000100",
  Z: "11111000010001000100010001000011111",
  "0": "01110100011001110101110011000101110",
  "1": "00100011000010000100001000010001110",
  "2": "01110100010000100010001000100011111",
  "3": "11111000100010000010000011000101110",
  "4": "00010001100101010010111110001000010",
  "5": "11111100001111000001000011000101110",
  "6": "00110010001000011110100011000101110",
  "7": "11111000010001000100010000100001000",
  "8": "01110100011000101110100011000101110",
  "9": "01110100011000101111000010001001100",
  ".": "00000000000000000000000000110001100",
  "-": "00000000000000011111000000000000000",
  " ": "00000000000000000000000000000000000"
}

/** The width of `text` drawn at `scale` (6 columns per glyph, with its spacing). */
export const textWidth = (text: string, scale: number): number => text.length * 6 * scale

/** Text on a filled label background, its top-left corner at (x, y). Characters without a glyph are skipped. */
export const label = (c: Canvas, text: string, x: number, y: number, color: Rgb, scale = 2): void => {
  const height = 9 * scale
  fillRect(c, x, y, textWidth(text, scale) + 2 * scale, height, color)
  let left = x + 2 * scale
  for (const ch of text.toUpperCase()) {
    const glyph = font[ch]
    if (glyph !== undefined) {
      for (let i = 0; i < 35; i++) {
        if (glyph[i] === "1")
          fillRect(c, left + (i % 5) * scale, y + scale + Math.floor(i / 5) * scale, scale, scale, WHITE)
      }
    }
    left += 6 * scale
  }
}

const WHITE: Rgb = [255, 255, 255]

/** A colour per class, the same on every run (person is orange). */
const classColor = (classId: number): Rgb => {
  const palette: ReadonlyArray<Rgb> = [
    [230, 90, 20],
    [30, 130, 220],
    [40, 170, 70],
    [200, 40, 160],
    [120, 80, 200],
    [20, 160, 170]
  ]
  return palette[classId % palette.length]!
}

/**
 * Each detection's box and a "label 0.53" tag above it (inside the picture when the box touches the top), in small
 * type when the tag would be much wider than its box.
 */
export const drawDetections = (c: Canvas, detections: ReadonlyArray<Vision.Detection>): void => {
  for (const d of detections) {
    const color = classColor(d.classId)
    strokeRect(c, d.box.x, d.box.y, d.box.width, d.box.height, color, 3)
    const text = `${d.label} ${d.score.toFixed(2)}`
    const scale = textWidth(text, 2) <= d.box.width + 24 ? 2 : 1
    const top = d.box.y - 9 * scale >= 0 ? d.box.y - 9 * scale : d.box.y
    label(c, text, d.box.x, top, color, scale)
  }
}

/** MoveNet's skeleton: which keypoints are joined by a bone. */
export const bones: ReadonlyArray<readonly [Vision.Keypoint["name"], Vision.Keypoint["name"]]> = [
  ["nose", "leftEye"],
  ["nose", "rightEye"],
  ["leftEye", "leftEar"],
  ["rightEye", "rightEar"],
  ["leftShoulder", "rightShoulder"],
  ["leftShoulder", "leftElbow"],
  ["leftElbow", "leftWrist"],
  ["rightShoulder", "rightElbow"],
  ["rightElbow", "rightWrist"],
  ["leftShoulder", "leftHip"],
  ["rightShoulder", "rightHip"],
  ["leftHip", "rightHip"],
  ["leftHip", "leftKnee"],
  ["leftKnee", "leftAnkle"],
  ["rightHip", "rightKnee"],
  ["rightKnee", "rightAnkle"]
]

/** A pose's bones and keypoints, those scoring at least `minScore`; left side green, right side blue. */
export const drawPose = (c: Canvas, keypoints: ReadonlyArray<Vision.Keypoint>, minScore = 0.3): void => {
  const at = new Map(keypoints.filter((k) => k.score >= minScore).map((k) => [k.name, k]))
  const side = (name: string): Rgb =>
    name.startsWith("left") ? [60, 220, 60] : name.startsWith("right") ? [60, 140, 255] : [255, 230, 40]
  for (const [a, b] of bones) {
    const p = at.get(a)
    const q = at.get(b)
    if (p !== undefined && q !== undefined) line(c, p.x, p.y, q.x, q.y, side(b), 3)
  }
  for (const k of at.values()) {
    dot(c, k.x, k.y, 5, WHITE)
    dot(c, k.x, k.y, 3, side(k.name))
  }
}

/** A rectangle of a picture, clamped to it: what a pose call gets for one detected person. */
export const crop = (image: Vision.RgbImage, box: Vision.Box, margin = 0.1): Canvas & { x: number; y: number } => {
  const x = Math.max(0, Math.floor(box.x - box.width * margin))
  const y = Math.max(0, Math.floor(box.y - box.height * margin))
  const width = Math.min(image.width, Math.ceil(box.x + box.width * (1 + margin))) - x
  const height = Math.min(image.height, Math.ceil(box.y + box.height * (1 + margin))) - y
  const data = new Uint8Array(width * height * 3)
  for (let row = 0; row < height; row++) {
    const from = ((y + row) * image.width + x) * 3
    data.set(image.data.subarray(from, from + width * 3), row * width * 3)
  }
  return { x, y, width, height, data }
}

/** The picture scaled down to `width` (each new pixel the mean of the source pixels it covers), and the scale. */
export const shrink = (image: Vision.RgbImage, width: number): { readonly canvas: Canvas; readonly scale: number } => {
  if (width >= image.width) return { canvas: canvasOf(image), scale: 1 }
  const scale = width / image.width
  const height = Math.max(1, Math.round(image.height * scale))
  const data = new Uint8Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    const y0 = Math.floor(y / scale)
    const y1 = Math.max(y0 + 1, Math.min(image.height, Math.floor((y + 1) / scale)))
    for (let x = 0; x < width; x++) {
      const x0 = Math.floor(x / scale)
      const x1 = Math.max(x0 + 1, Math.min(image.width, Math.floor((x + 1) / scale)))
      let r = 0
      let g = 0
      let b = 0
      for (let sy = y0; sy < y1; sy++) {
        for (let sx = x0; sx < x1; sx++) {
          const i = (sy * image.width + sx) * 3
          r += image.data[i]!
          g += image.data[i + 1]!
          b += image.data[i + 2]!
        }
      }
      const n = (y1 - y0) * (x1 - x0)
      const o = (y * width + x) * 3
      data[o] = r / n
      data[o + 1] = g / n
      data[o + 2] = b / n
    }
  }
  return { canvas: { width, height, data }, scale }
}

/** Detections with their boxes in a picture scaled by `scale`. */
export const scaleDetections = (
  detections: ReadonlyArray<Vision.Detection>,
  scale: number
): ReadonlyArray<Vision.Detection> =>
  detections.map((d) => ({
    ...d,
    box: { x: d.box.x * scale, y: d.box.y * scale, width: d.box.width * scale, height: d.box.height * scale }
  }))

/** Keypoints in a picture scaled by `scale`. */
export const scaleKeypoints = (
  keypoints: ReadonlyArray<Vision.Keypoint>,
  scale: number
): ReadonlyArray<Vision.Keypoint> => keypoints.map((k) => ({ ...k, x: k.x * scale, y: k.y * scale }))

/** PNG bytes of a picture. */
export const encodePng = (c: Canvas): Uint8Array => {
  const png = new PNG({ width: c.width, height: c.height })
  for (let i = 0, j = 0; i < c.width * c.height; i++, j += 3) {
    png.data[i * 4] = c.data[j]!
    png.data[i * 4 + 1] = c.data[j + 1]!
    png.data[i * 4 + 2] = c.data[j + 2]!
    png.data[i * 4 + 3] = 255
  }
  return new Uint8Array(PNG.sync.write(png))
}
