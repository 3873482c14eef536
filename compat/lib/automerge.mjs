// Test helpers for driving a real `weft` binary with the real automerge-repo packages.
//
// Owns: the `/ws/automerge` URL of a running server, and opening an automerge-repo `Repo` wired to
// it through `@automerge/automerge-repo-network-websocket`'s client adapter (no storage, so every
// document a fresh repo holds came through Weft; a short retry interval so restarts are noticed
// quickly), and closing such repos. Starting and stopping the server is `weft.mjs`'s job; no
// assertion about Weft's behaviour lives here.

import { Repo } from '@automerge/automerge-repo'
import { WebSocketClientAdapter } from '@automerge/automerge-repo-network-websocket'

/** How often a disconnected adapter tries again (the package's default is 5 s). */
const RETRY_MS = 100

/**
 * The automerge-repo endpoint of `server`.
 * @param {import('./weft.mjs').WeftServer} server
 */
export function automergeUrl (server) {
  return `ws://127.0.0.1:${server.port}/ws/automerge`
}

/**
 * A `Repo` with one WebSocket client adapter pointed at `server`. `peerId` names the repo on the
 * wire (automerge-repo picks a random one otherwise).
 * @param {import('./weft.mjs').WeftServer} server
 * @param {{ peerId?: string }} [opts]
 */
export function openRepo (server, opts = {}) {
  const adapter = new WebSocketClientAdapter(automergeUrl(server), RETRY_MS)
  const repo = new Repo({ network: [adapter], peerId: opts.peerId })
  return { repo, adapter }
}

/**
 * The server's peer id once `repo` has completed the join/peer handshake with it, else undefined.
 * @param {{ adapter: WebSocketClientAdapter }} opened
 */
export function serverPeerId ({ adapter }) {
  return adapter.remotePeerId
}

/**
 * Shuts a repo down: disconnects its adapter (which stops its reconnect timer) and flushes.
 * @param {{ repo: Repo }} opened
 */
export async function closeRepo ({ repo }) {
  await repo.shutdown()
}
