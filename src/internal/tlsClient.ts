import type * as HttpClient from "@effect/platform/HttpClient"
import { Effect, Layer } from "effect"
import * as Http from "node:http"
import type * as Https from "node:https"

// The client side of TLS, apart from the server's certificate loading so that a client imports no server code.

/** How a client reaches a worker that serves TLS. @internal */
export interface ClientOptions {
  /** Certificate authorities to trust instead of Node's defaults (PEM), e.g. the platform's root or a self-signed cert. */
  readonly ca?: string | Buffer | ReadonlyArray<string | Buffer> | undefined
  /** An agent of your own for `https:` URLs (proxies, client certificates, keep-alive settings); wins over `ca`. */
  readonly agent?: Https.Agent | undefined
}

/**
 * An `HttpClient` on node:http/node:https that trusts `ca` (or uses `agent`). Agents it makes are destroyed with the
 * layer; an agent given is the caller's to destroy.
 *
 * @internal
 */
export const clientLayer = (options: ClientOptions): Layer.Layer<HttpClient.HttpClient> =>
  // Imported when the layer is built: NodeHttpClient loads undici, which every importer of the package (a worker
  // process among them) would otherwise pay for at start-up, TLS or not
  Layer.unwrapEffect(
    Effect.map(
      Effect.promise(() => import("@effect/platform-node/NodeHttpClient")),
      (NodeHttpClient) => layerWith(NodeHttpClient, options)
    )
  )

const layerWith = (
  NodeHttpClient: typeof import("@effect/platform-node/NodeHttpClient"),
  options: ClientOptions
): Layer.Layer<HttpClient.HttpClient> => {
  const agent =
    options.agent !== undefined
      ? Layer.scoped(
          NodeHttpClient.HttpAgent,
          Effect.map(
            Effect.acquireRelease(
              Effect.sync(() => new Http.Agent({ keepAlive: true })),
              (http) => Effect.sync(() => http.destroy())
            ),
            (http) =>
              NodeHttpClient.HttpAgent.of({
                [NodeHttpClient.HttpAgentTypeId]: NodeHttpClient.HttpAgentTypeId,
                http,
                https: options.agent!
              })
          )
        )
      : NodeHttpClient.makeAgentLayer({
          keepAlive: true,
          ...(options.ca === undefined ? {} : { ca: options.ca as string | Buffer | Array<string | Buffer> })
        })
  return NodeHttpClient.layerWithoutAgent.pipe(Layer.provide(agent))
}
