// An optional third server of bench/http-latency.ts (`--platform`): an @effect/platform `HttpRouter` route doing the
// same JSON work as plain.mjs, on @effect/platform-node's server (what `Worker.serve` was built on before issue 7).
//
//   node bench/servers/platform.mjs   # prints `listening <port>` on 127.0.0.1
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer } from "effect"
import * as Http from "node:http"
import { announce, stopWithParent } from "./lifecycle.mjs"

const route = HttpRouter.empty.pipe(
  HttpRouter.post(
    "/remote/square",
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const envelope = yield* request.json
      const x = envelope.payload.kwargs.x
      return yield* HttpServerResponse.json({ result: { ok: x * x } })
    }).pipe(Effect.orDie)
  )
)

stopWithParent(() => process.kill(process.pid, "SIGTERM"))

NodeRuntime.runMain(
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    if (server.address._tag === "TcpAddress") announce(server.address.port)
    return yield* Effect.never
  }).pipe(
    Effect.provide(
      HttpServer.serve(route).pipe(
        Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { port: 0, host: "127.0.0.1" }))
      )
    )
  )
)
