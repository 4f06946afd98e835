import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { antispoof, detect, movenetKeypoints, pose } from "../../src/tfjs/internal/vision.js"
import { crop, expectPeopleInSample, layerWasm, Vision } from "../fixtures/tfjs.js"

layer(layerWasm, { timeout: "60 seconds" })("vision on wasm", (it) => {
  it.effect("detect finds the people in the sample photo", () =>
    Effect.gen(function* () {
      const { centernet, samples, tf } = yield* Vision
      const detections = detect(tf, centernet, samples, { minScore: 0.2, maxResults: 20 })
      expectPeopleInSample(detections)
      const people = detections.filter((d) => d.label === "person")
      const scores = detections.map((d) => d.score)
      expect(scores).toEqual([...scores].sort((a, b) => b - a))
      // a person in the group photo (below y = 195) is found with a standing person's shape
      expect(people.some((d) => d.box.y > 195 && d.box.height > 2 * d.box.width)).toBe(true)
    })
  )

  it.effect("detect honours maxResults and minScore", () =>
    Effect.gen(function* () {
      const { centernet, samples, tf } = yield* Vision
      expect(detect(tf, centernet, samples, { minScore: 0.2, maxResults: 3 })).toHaveLength(3)
      const confident = detect(tf, centernet, samples, { minScore: 0.4, maxResults: 20 })
      expect(confident.length).toBeGreaterThan(0)
      expect(confident.every((d) => d.score >= 0.4)).toBe(true)
      expect(detect(tf, centernet, samples, { minScore: 0.99 })).toEqual([])
    })
  )

  it.effect("antispoof scores a batch in one invocation, each image as it scores alone", () =>
    Effect.gen(function* () {
      const { antispoof: model, samples, tf } = yield* Vision
      // The thumbnails of the top row: eight people, 160 px apart.
      const faces = [0, 1, 2, 3, 4].map((i) => crop(samples, i * 160, 0, 160, 158))
      const alone = faces.map((face) => antispoof(tf, model, [face])[0]!)
      expect(alone.every((s) => s >= 0 && s <= 1)).toBe(true)
      expect(new Set(alone.map((s) => s.toFixed(3))).size).toBeGreaterThan(1)
      const batched = antispoof(tf, model, faces)
      expect(batched).toHaveLength(5)
      batched.forEach((s, i) => expect(s).toBeCloseTo(alone[i]!, 4))
      // Order follows the input: reversed in, reversed out.
      antispoof(tf, model, [...faces].reverse()).forEach((s, i) => expect(s).toBeCloseTo(alone[4 - i]!, 4))
      expect(antispoof(tf, model, [])).toEqual([])
    })
  )

  it.effect("pose places the standing figure's keypoints head to toe", () =>
    Effect.gen(function* () {
      const { movenet, samples, tf } = yield* Vision
      // The first thumbnail: one full-length figure in a light room
      const figure = crop(samples, 0, 0, 160, 158)
      const keypoints = pose(tf, movenet, figure)
      expect(keypoints.map((k) => k.name)).toEqual([...movenetKeypoints])
      const at = (name: string) => keypoints.find((k) => k.name === name)!
      for (const k of keypoints) {
        expect(k.score).toBeGreaterThan(0.3)
        expect(k.x).toBeGreaterThanOrEqual(0)
        expect(k.x).toBeLessThanOrEqual(figure.width)
        expect(k.y).toBeGreaterThanOrEqual(0)
        expect(k.y).toBeLessThanOrEqual(figure.height)
      }
      expect(at("nose").y).toBeLessThan(at("leftShoulder").y)
      expect(at("leftShoulder").y).toBeLessThan(at("leftHip").y)
      expect(at("leftHip").y).toBeLessThan(at("leftKnee").y)
      expect(at("leftKnee").y).toBeLessThan(at("leftAnkle").y)
      expect(at("leftAnkle").y).toBeGreaterThan(figure.height * 0.75)
    })
  )

  it.effect("repeated calls leave no tensor behind", () =>
    Effect.gen(function* () {
      const { centernet, movenet, samples, tf } = yield* Vision
      const figure = crop(samples, 0, 0, 160, 158)
      const before = tf.memory().numTensors
      // ~150 ms a detect on 2 cores: 20 of them, and 100 of the cheaper pose
      for (let i = 0; i < 20; i++) detect(tf, centernet, samples)
      for (let i = 0; i < 100; i++) pose(tf, movenet, figure)
      expect(tf.memory().numTensors).toBe(before)
    })
  )

  it.effect("refuses an image whose bytes do not match its size, leaking nothing", () =>
    Effect.gen(function* () {
      const { centernet, tf } = yield* Vision
      const before = tf.memory().numTensors
      expect(() => detect(tf, centernet, { width: 10, height: 10, data: new Uint8Array(10) })).toThrow(
        "needs 300 bytes, got 10"
      )
      expect(tf.memory().numTensors).toBe(before)
    })
  )
})
