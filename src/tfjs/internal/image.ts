/**
 * Decoding request images (JPEG, PNG) to packed RGB in pure JavaScript, so that no native image library is needed.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { ImageDecodeError } from "./errors.js"
import { cachedPeer } from "./peer.js"

// Optional peers, imported at the first image of their format (see peer.ts). A missing one is a defect of the
// deployment, not of the image: the call fails with it (CallFailed on the wire) and the log names the package.
const jpegDecoder = cachedPeer("Vision.decodeImage (JPEG)", () => import("jpeg-js"))
const pngDecoder = cachedPeer("Vision.decodeImage (PNG)", () => import("pngjs"))

/**
 * A decoded image: `data` holds `width * height * 3` bytes, row by row, R G B for each pixel.
 */
export interface RgbImage {
  readonly width: number
  readonly height: number
  readonly data: Uint8Array
}

/**
 * The formats {@link decodeImage} reads.
 */
export type ImageFormat = "jpeg" | "png"

/**
 * Options of {@link decodeImage}.
 */
export interface DecodeOptions {
  /**
   * The largest image accepted, in megapixels (default 40). The check reads the header before decoding, so a small
   * file that claims a huge image (a decompression bomb) costs nothing.
   */
  readonly maxResolutionInMP?: number
}

const defaultMaxResolutionInMP = 40

const pngSignature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

/**
 * The format the magic bytes announce, or undefined.
 */
export const sniffFormat = (bytes: Uint8Array): ImageFormat | undefined => {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg"
  if (bytes.length >= 8 && pngSignature.every((b, i) => bytes[i] === b)) return "png"
  return undefined
}

const describe = (bytes: Uint8Array): string => {
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ")
  return bytes.length === 0 ? "0 bytes" : `${bytes.length} bytes starting with ${head}`
}

const readUint32 = (bytes: Uint8Array, at: number): number =>
  (bytes[at] ?? 0) * 0x1000000 + (((bytes[at + 1] ?? 0) << 16) | ((bytes[at + 2] ?? 0) << 8) | (bytes[at + 3] ?? 0))

const readUint16 = (bytes: Uint8Array, at: number): number => ((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0)

/**
 * Width and height from the header, without decoding. For JPEG, the first start-of-frame segment (SOF0..SOF15 less
 * DHT, JPG and DAC, which share the marker range); undefined when the header is cut short.
 */
export const readDimensions = (
  bytes: Uint8Array,
  format: ImageFormat
): { readonly width: number; readonly height: number } | undefined => {
  if (format === "png") {
    // The IHDR chunk comes first: 8 signature bytes, 4 length, 4 type, then width and height
    return bytes.length >= 24 ? { width: readUint32(bytes, 16), height: readUint32(bytes, 20) } : undefined
  }
  let at = 2
  while (at + 9 < bytes.length) {
    if (bytes[at] !== 0xff) return undefined
    const marker = bytes[at + 1] ?? 0
    // Fill bytes may pad segments
    if (marker === 0xff) {
      at += 1
      continue
    }
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: readUint16(bytes, at + 5), width: readUint16(bytes, at + 7) }
    }
    at += 2 + readUint16(bytes, at + 2)
  }
  return undefined
}

const decodeJpeg = (jpeg: typeof import("jpeg-js"), bytes: Uint8Array, maxResolutionInMP: number): RgbImage => {
  const image = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxResolutionInMP })
  return { width: image.width, height: image.height, data: image.data }
}

const decodePng = ({ PNG }: typeof import("pngjs"), bytes: Uint8Array): RgbImage => {
  const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
  // pngjs always yields 8-bit RGBA whatever the colour type: drop alpha (the models take RGB)
  const pixels = png.width * png.height
  const data = new Uint8Array(pixels * 3)
  for (let i = 0, j = 0; i < pixels; i++, j += 4) {
    data[i * 3] = png.data[j] ?? 0
    data[i * 3 + 1] = png.data[j + 1] ?? 0
    data[i * 3 + 2] = png.data[j + 2] ?? 0
  }
  return { width: png.width, height: png.height, data }
}

/**
 * Decodes JPEG or PNG bytes to RGB, telling the format by its magic bytes rather than by any name or MIME type.
 * Fails with an {@link ImageDecodeError}: `UnknownFormat` for other bytes, `TooLarge` over the resolution limit,
 * `Corrupt` when the decoder gives up.
 *
 * @example
 * const rgb = yield* decodeImage(new Uint8Array(await fs.readFile("photo.jpg")), { maxResolutionInMP: 12 })
 */
export const decodeImage = (bytes: Uint8Array, options?: DecodeOptions): Effect.Effect<RgbImage, ImageDecodeError> =>
  Effect.suspend(() => {
    const format = sniffFormat(bytes)
    if (format === undefined) {
      return Effect.fail(
        new ImageDecodeError({
          reason: "UnknownFormat",
          message: `expected a JPEG or PNG image, got ${describe(bytes)}`
        })
      )
    }
    const maxResolutionInMP = options?.maxResolutionInMP ?? defaultMaxResolutionInMP
    const dimensions = readDimensions(bytes, format)
    if (dimensions === undefined || dimensions.width === 0 || dimensions.height === 0) {
      return Effect.fail(
        new ImageDecodeError({
          reason: "Corrupt",
          message: `the ${format.toUpperCase()} header in ${bytes.length} bytes gives no image size`
        })
      )
    }
    const megapixels = (dimensions.width * dimensions.height) / 1_000_000
    if (megapixels > maxResolutionInMP) {
      return Effect.fail(
        new ImageDecodeError({
          reason: "TooLarge",
          message: `the ${format.toUpperCase()} image is ${dimensions.width}x${dimensions.height} (${megapixels.toFixed(
            1
          )} MP), over the limit of ${maxResolutionInMP} MP`
        })
      )
    }
    const decode =
      format === "jpeg"
        ? Effect.map(jpegDecoder, (jpeg) => () => decodeJpeg(jpeg, bytes, maxResolutionInMP))
        : Effect.map(pngDecoder, (png) => () => decodePng(png, bytes))
    return Effect.flatMap(Effect.orDie(decode), (run) =>
      Effect.try({
        try: run,
        catch: (u) =>
          new ImageDecodeError({
            reason: "Corrupt",
            message: `cannot decode the ${format.toUpperCase()} image (${bytes.length} bytes): ${
              u instanceof Error ? u.message : String(u)
            }`
          })
      })
    )
  })
