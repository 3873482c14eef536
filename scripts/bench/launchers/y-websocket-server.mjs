// Launches @y/websocket-server's connection handler, in memory, on 127.0.0.1 with a port the OS
// picks, for weft-bench. Prints `listening on http://ADDR` first, as every launcher must; exits on
// SIGTERM. Copied next to the installed packages by scripts/bench/side-by-side so that it resolves them.
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { setupWSConnection } from '@y/websocket-server/utils'

// Persistence is opt-in through this variable; the comparison runs the peer in memory.
delete process.env.YPERSISTENCE

const server = http.createServer((_request, response) => {
  response.writeHead(200, { 'content-type': 'text/plain' })
  response.end('ok')
})
const wss = new WebSocketServer({ noServer: true })
wss.on('connection', setupWSConnection)
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
})
server.listen(0, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`)
})
process.on('SIGTERM', () => process.exit(0))
