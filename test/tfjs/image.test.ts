import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as jpeg from "jpeg-js"
import { PNG } from "pngjs"
import { decodeImage, readDimensions, sniffFormat } from "../../src/tfjs/internal/image.js"
import { samplesBytes } from "../fixtures/tfjs.js"

const solid = (width: number, height: number, rgba: readonly [number, number, number, number]): Buffer => {
  const data = Buffer.alloc(width * height * 4)
  for (let i = 0; i < width * height; i++) data.set(rgba, i * 4)
  return data
}

const jpegBytes = (width: number, height: number): Uint8Array =>
  new Uint8Array(jpeg.encode({ width, height, data: solid(width, height, [200, 30, 40, 255]) }, 95).data)

const pngBytes = (width: number, height: number): Uint8Array => {
  const png = new PNG({ width, height })
  png.data = solid(width, height, [10, 120, 250, 128])
  return new Uint8Array(PNG.sync.write(png))
}

describe("decodeImage", () => {
  it.effect("decodes a JPEG to packed RGB", () =>
    Effect.gen(function* () {
      const rgb = yield* decodeImage(jpegBytes(16, 8))
      expect([rgb.width, rgb.height, rgb.data.length]).toEqual([16, 8, 16 * 8 * 3])
      // JPEG is lossy: the colour comes back close, not equal
      const [r = 0, g = 0, b = 0] = rgb.data
      expect(Math.abs(r - 200) + Math.abs(g - 30) + Math.abs(b - 40)).toBeLessThan(15)
    })
  )

  it.effect("decodes a PNG to RGB, dropping alpha", () =>
    Effect.gen(function* () {
      const rgb = yield* decodeImage(pngBytes(5, 3))
      expect([rgb.width, rgb.height]).toEqual([5, 3])
      expect(Array.from(rgb.data)).toEqual(Array.from({ length: 15 }, () => [10, 120, 250]).flat())
    })
  )

  it.effect("decodes the sample photo", () =>
    Effect.gen(function* () {
      const rgb = yield* decodeImage(samplesBytes())
      expect([rgb.width, rgb.height, rgb.data.length]).toEqual([1280, 1158, 1280 * 1158 * 3])
    })
  )

  it.effect("fails on other bytes with what it expected and what it got", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(decodeImage(new TextEncoder().encode("GIF89a, not a JPEG")))
      expect(error._tag).toBe("ImageDecodeError")
      expect(error.reason).toBe("UnknownFormat")
      expect(error.message).toBe("expected a JPEG or PNG image, got 18 bytes starting with 47 49 46 38 39 61 2c 20")
      const empty = yield* Effect.flip(decodeImage(new Uint8Array()))
      expect(empty.message).toBe("expected a JPEG or PNG image, got 0 bytes")
    })
  )

  it.effect("refuses an image over the resolution limit before decoding it", () =>
    Effect.gen(function* () {
      // A valid signature and an IHDR claiming 100000 x 100000, and nothing else: decoding would fail, not the guard
      const header = pngBytes(1, 1).slice(0, 33)
      new DataView(header.buffer).setUint32(16, 100_000)
      new DataView(header.buffer).setUint32(20, 100_000)
      const bomb = yield* Effect.flip(decodeImage(header))
      expect(bomb.reason).toBe("TooLarge")
      expect(bomb.message).toContain("100000x100000")
      const jpegTooBig = yield* Effect.flip(decodeImage(jpegBytes(64, 64), { maxResolutionInMP: 0.001 }))
      expect(jpegTooBig.reason).toBe("TooLarge")
      expect(yield* decodeImage(jpegBytes(64, 64), { maxResolutionInMP: 0.005 })).toMatchObject({ width: 64 })
    })
  )

  it.effect("fails on a truncated file as corrupt", () =>
    Effect.gen(function* () {
      const png = pngBytes(32, 32)
      const error = yield* Effect.flip(decodeImage(png.subarray(0, png.length - 30)))
      expect(error.reason).toBe("Corrupt")
      const headerless = yield* Effect.flip(decodeImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])))
      expect(headerless.reason).toBe("Corrupt")
    })
  )

  it("sniffs formats and reads sizes from headers", () => {
    expect(sniffFormat(jpegBytes(4, 4))).toBe("jpeg")
    expect(sniffFormat(pngBytes(4, 4))).toBe("png")
    expect(sniffFormat(new Uint8Array([0x89, 0x50]))).toBeUndefined()
    expect(readDimensions(jpegBytes(40, 30), "jpeg")).toEqual({ width: 40, height: 30 })
    expect(readDimensions(samplesBytes(), "jpeg")).toEqual({ width: 1280, height: 1158 })
    expect(readDimensions(pngBytes(7, 9), "png")).toEqual({ width: 7, height: 9 })
  })
})
