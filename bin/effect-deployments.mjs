#!/usr/bin/env node
// The effect-deployments command: the compiled CLI, run in this process (no child process, so that a signal sent to
// this process reaches the worker; and no TypeScript compiler at start-up).
import { existsSync } from "node:fs"

const cli = new URL("../dist/internal/cli.js", import.meta.url)
if (!existsSync(cli)) {
  process.stderr.write(
    "effect-deployments: dist/ is missing. In a checkout of the repository, build it (npm run build) or run the CLI " +
      "from source: node --import tsx src/internal/cli.ts serve <module>\n"
  )
  process.exit(1)
}
await import(cli.href)
