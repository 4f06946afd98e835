// What every bench server child shares with its parent (bench/http-latency.ts): one line on stdout says where it
// listens, and it stops when the parent goes. The parent holds the other end of the child's stdin, which closes when
// the parent exits for any reason (SIGKILL included), so no server outlives a bench run. Plain JavaScript, run by
// node itself: the servers are measured as users run them, without a TypeScript loader in the process.

/** The line the parent waits for: `listening <port>`. */
export const announce = (port) => {
  process.stdout.write(`listening ${port}\n`)
}

/** Run `stop` when the parent closes our stdin (it exited, or it is done with us). */
export const stopWithParent = (stop) => {
  let stopped = false
  const once = () => {
    if (stopped) return
    stopped = true
    stop()
  }
  process.stdin.on("end", once)
  process.stdin.on("error", once)
  process.stdin.resume()
}
