// The baseline of bench/http-latency.ts: a plain `node:http` server doing by hand the JSON work of
// `POST /remote/square` (read the body, `JSON.parse` the envelope, square `x`, answer `{"result":{"ok":...}}`).
//
//   node bench/servers/plain.mjs   # prints `listening <port>` on 127.0.0.1
import * as Http from "node:http"
import { announce, stopWithParent } from "./lifecycle.mjs"

const server = Http.createServer((req, res) => {
  const chunks = []
  req.on("data", (c) => chunks.push(c))
  req.on("end", () => {
    let out
    try {
      const envelope = JSON.parse(Buffer.concat(chunks).toString("utf8"))
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

server.listen(0, "127.0.0.1", () => announce(server.address().port))
