// Test helpers for driving a real `weft` binary with the real automerge-repo packages.
//
// Owns: the `/ws/automerge` URL of a running server, and opening an automerge-repo `Repo` wired to
// it through `@automerge/automerge-repo-network-websocket`'s client adapter (no storage, so every
// document a fresh repo holds came through Weft; a short retry interval so restarts are noticed
// quickly), finding documents in bounded time, recording the `error` messages a repo receives, and
// closing repos. Starting and stopping the server is `weft.mjs`'s job; no assertion about Weft's
// behaviour lives here.

import { Repo } from '@automerge/automerge-repo'
import { WebSocketClientAdapter } from '@automerge/automerge-repo-network-websocket'
import { decode as cborDecode } from 'cbor-x'

/** How long a find may take. */
const WAIT_MS = 10_000

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
 * wire (automerge-repo picks a random one otherwise); `token` is sent as `?token=`.
 * @param {import('./weft.mjs').WeftServer} server
 * @param {{ peerId?: string, token?: string }} [opts]
 */
export function openRepo (server, opts = {}) {
  const url = opts.token ? `${automergeUrl(server)}?token=${encodeURIComponent(opts.token)}` : automergeUrl(server)
  const adapter = new WebSocketClientAdapter(url, RETRY_MS)
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

/**
 * Records the `error` messages the server sends on `opened`'s current socket (the adapter only
 * logs them). Call once the adapter has connected; returns the list it fills.
 * @param {{ adapter: WebSocketClientAdapter }} opened
 */
export function recordErrors ({ adapter }) {
  /** @type {string[]} */
  const errors = []
  adapter.socket.addEventListener('message', (event) => {
    const message = cborDecode(new Uint8Array(event.data))
    if (message?.type === 'error') errors.push(message.message)
  })
  return errors
}

/** Finds `url` in `repo`, bounded in time; rejects if Weft answers that it does not have it. */
export function find (repo, url) {
  return withTimeout(repo.find(url), WAIT_MS, `find ${url}`)
}

/**
 * Finds a document another repo has just created. Its first sync may still be on the way to Weft,
 * which then answers `doc-unavailable`; the handle turns ready when Weft passes the document on.
 */
export async function findEventually (repo, url) {
  const handle = await withTimeout(repo.find(url, { allowableStates: ['ready', 'unavailable'] }), WAIT_MS, `find ${url}`)
  await withTimeout(handle.whenReady(), WAIT_MS, `${url} to become ready`)
  return handle
}

function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
