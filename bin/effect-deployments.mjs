#!/usr/bin/env node
// Launcher: the CLI and the deployment modules it loads are TypeScript, compiled on the fly by tsx in this process
// (no child process, so signals reach the worker directly).
import { register } from "tsx/esm/api"

register()
await import("../src/internal/cli.ts")
