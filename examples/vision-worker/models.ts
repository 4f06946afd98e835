/**
 * The vision worker's models: three real graph models from the weights `@vladmandic/human` ships (they load offline),
 * and its sample photo. Each thread of the worker enters these contexts (see thread.ts).
 */
import { Context } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { Tfjs } from "effect-deployments/tfjs"

/** The installed `@vladmandic/human`: its exports map hides package.json, so go up from its entry point. */
const humanRoot = path.resolve(path.dirname(createRequire(import.meta.url).resolve("@vladmandic/human")), "..")

/** CenterNet, the COCO object detector: input [1, 512, 512, 3] float32, output [1, 100, 6]. */
export const centernetPath = path.join(humanRoot, "models", "centernet.json")

/** MoveNet Lightning, single-person pose: input [1, 192, 192, 3] int32, output 17 x [y, x, score]. */
export const movenetPath = path.join(humanRoot, "models", "movenet-lightning.json")

/** The sample photo human ships (1280x1158 JPEG: eight thumbnails of people above a group photo). */
export const samplePath = path.join(humanRoot, "assets", "samples.jpg")

let sample: Uint8Array | undefined
/**
 * The bytes of {@link samplePath} (read once), as a fresh copy on each call: a call to `detect` moves its image to a
 * thread, which empties the caller's array.
 */
export const sampleBytes = (): Uint8Array => (sample ??= new Uint8Array(fs.readFileSync(samplePath))).slice()

/** The anti-spoofing model: input [N, 128, 128, 3] float32 (0..1), output [N, 1] (human reports it as `real`). */
export const antispoofPath = path.join(humanRoot, "models", "antispoof.json")

/** The object detector. */
export class Centernet extends Context.Tag("Centernet")<Centernet, Tfjs.GraphModel>() {}

/** The pose estimator. */
export class Movenet extends Context.Tag("Movenet")<Movenet, Tfjs.GraphModel>() {}

/** Loads CenterNet and runs it once on zeros, so that the first request does not pay for the first inference. */
export const CenternetLive = Tfjs.graphModel(Centernet, { path: centernetPath, warmup: 1 })

/** Loads MoveNet Lightning and warms it up. Depends only on the backend: it loads alongside CenterNet. */
export const MovenetLive = Tfjs.graphModel(Movenet, { path: movenetPath, warmup: 1 })

/** The anti-spoofing model. */
export class Antispoof extends Context.Tag("Antispoof")<Antispoof, Tfjs.GraphModel>() {}

/** Loads the anti-spoofing model (small: a few hundred KB) and warms it up. */
export const AntispoofLive = Tfjs.graphModel(Antispoof, { path: antispoofPath, warmup: 1 })
