// Launches a bare @hocuspocus/server (no extensions, so documents live in memory only) on 127.0.0.1
// with a port the OS picks, for weft-bench. Prints `listening on http://ADDR` first, as every launcher
// must; exits on SIGTERM. Copied next to the installed packages by scripts/bench/side-by-side.
import { Server } from '@hocuspocus/server'

const server = new Server({ port: 0, address: '127.0.0.1', quiet: true })
await server.listen()
console.log(`listening on http://127.0.0.1:${server.address.port}`)
process.on('SIGTERM', async () => {
  await server.destroy()
  process.exit(0)
})
