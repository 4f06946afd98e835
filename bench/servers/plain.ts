/**
 * The baseline of bench/http-latency.ts: a plain `node:http` server doing by hand the JSON work of
 * `POST /remote/square` (read the body, `JSON.parse` the envelope, square `x`, answer `{"result":{"ok":...}}`).
 *
 *   node --import tsx bench/servers/plain.ts   # prints `listening <port>` on 127.0.0.1
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { announce, stopWithParent } from "./lifecycle.js"

const server = Http.createServer((req, res) => {
  const chunks: Array<Buffer> = []
  req.on("data", (c: Buffer) => chunks.push(c))
  req.on("end", () => {
    let out: string
    try {
      const envelope = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { payload: { kwargs: { x: number } } }
      const x = envelope.payload.kwargs.x
      out = JSON.stringify({ result: { ok: x * x } })
    } catch (e) {
      const message = JSON.stringify({ error: String(e) })
      res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(message) })
      return res.end(message)
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) }).end(out)
  })
})

const stop = () => {
  server.close()
  server.closeAllConnections()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
stopWithParent(stop)

server.listen(0, "127.0.0.1", () => announce((server.address() as AddressInfo).port))
