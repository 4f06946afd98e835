/**
 * Sessions: a remote that keeps one history per session (`Session.local`), released when the session ends.
 *
 * `npx tsx examples/chat-session.ts` serves it on a free port, opens a session as the reference's SDK does
 * (`POST /session/create`), makes two calls in it (`"session_id"` in the envelope), ends it, and prints what it saw.
 * `npx effect-deployments serve examples/chat-session.ts` serves it on :8000 instead.
 */
import { Effect, Ref, Schema } from "effect"
import { pathToFileURL } from "node:url"
import { Deployment, Remote, Session, Worker, WorkerError } from "effect-deployments"

/** The session's history: made by its first call, shared by the later ones, dropped when the session closes. */
const History = Session.local(
  "History",
  Effect.acquireRelease(Ref.make<ReadonlyArray<string>>([]), (history) =>
    Effect.flatMap(Ref.get(history), (lines) => Effect.logInfo(`session closed after ${lines.length} messages`))
  )
)

/** Answers with the number of messages its session has sent (a call outside a session is a session of one). */
export const chat = Remote.make(
  "chat",
  {
    payload: Schema.Struct({ text: Schema.String }),
    success: Schema.Struct({ session: Schema.String, messages: Schema.Number }),
    error: WorkerError.SessionRequired,
    benchmark: { generator: () => ({ text: "hello" }), runs: 1 }
  },
  ({ text }) =>
    Effect.gen(function* () {
      const session = yield* Session.current
      if (session._tag === "None") return { session: "(none)", messages: 1 }
      const lines = yield* Effect.flatMap(History, (history) => Ref.updateAndGet(history, (h) => [...h, text]))
      return { session: session.value.id, messages: lines.length }
    })
)

export const app = Deployment.make("chat", { contexts: [], remotes: [chat] })

export default app

const post = (url: string, body: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(url, { method: "POST", body: JSON.stringify(body) })
    return `${response.status} ${await response.text()}`
  })

// Run as a main: serve, then talk to it as the reference's SDK would.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const authData = { request_idx: 1, reqnum: 1, cost: 100, url: "http://localhost", signature: "" }
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const { url, httpUrl, worker } = yield* Worker.serveEffect(app, { port: 0, handleSignals: false })
        yield* worker.awaitReady
        const created = yield* post(`${url}/session/create`, { auth_data: authData, payload: { lifetime: 60 } })
        console.log(`POST /session/create -> ${created}`)
        const id = JSON.parse(created.slice(4)).session_id as string
        for (const text of ["hi", "again"]) {
          const answer = yield* post(`${url}/remote/chat`, { session_id: id, payload: { kwargs: { text } } })
          console.log(`POST /remote/chat (${text}) -> ${answer}`)
        }
        console.log(
          `POST /session/end (HTTP-only port) -> ${yield* post(`${httpUrl}/session/end`, {
            session_id: id,
            session_auth: authData
          })}`
        )
        console.log(
          `POST /remote/chat -> ${yield* post(`${url}/remote/chat`, { session_id: id, payload: { kwargs: { text: "late" } } })}`
        )
      })
    )
  )
}
