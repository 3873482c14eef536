// Crafted updates: the two y-websocket frames that bricked documents on 7ea3ca8
// (`sync-core/tests/crafted/frame_a.bin`, a sync step 2, and `frame_b.bin`), sent to a real
// `weft serve`, with the real `yjs` + `y-websocket` and `@hocuspocus/provider` (v4) clients around them.
//
// Owns the promises Weft makes about such input, seen by unmodified clients: the sender alone is
// closed with 4422, nothing of the frame is stored, the peers already connected stay connected, and
// the document goes on being served to both dialects — converging, editing, compacting after 1000
// updates and loading everything back after a SIGKILL. Every test has its own server and temp data
// dir and is bounded in time; nothing sleeps to synchronise.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

import WebSocket from 'ws'
import * as encoding from 'lib0/encoding'

import {
  connectProvider,
  describeFrames,
  echoCoversLocalEdits,
  repoDir,
  startWeft,
  waitFor,
  waitSynced
} from '../lib/weft.mjs'
import {
  decodeHocuspocusFrame,
  describeHocuspocusFrames,
  hocuspocusUrl,
  openProvider,
  openSocket
} from '../lib/hocuspocus.mjs'

const TEST_TIMEOUT_MS = 60_000
const WAIT_MS = 10_000
const CRAFTED = join(repoDir, 'sync-core', 'tests', 'crafted')
const FRAME_A = await readFile(join(CRAFTED, 'frame_a.bin'))
const FRAME_B = await readFile(join(CRAFTED, 'frame_b.bin'))
const INVALID_UPDATE = 4422

/**
 * A server plus every provider and socket a test opens; all are torn down after the test.
 * `closes` counts, per y-websocket provider, the connections it saw end.
 */
async function setup (t, opts = {}) {
  const server = await startWeft(opts)
  const yProviders = []
  const hProviders = []
  const sockets = []
  t.after(async () => {
    for (const { provider, doc } of [...yProviders, ...hProviders]) {
      provider.destroy()
      doc.destroy()
    }
    for (const { socket } of sockets) socket.destroy()
    await server.cleanup()
  })
  return {
    server,
    /** @param {string} room @param {{ clientID?: number }} [opts] */
    yProvider (room, opts) {
      const p = connectProvider(server, room, opts)
      p.closes = 0
      p.provider.on('connection-close', () => { p.closes++ })
      yProviders.push(p)
      return p
    },
    /** A v4 Hocuspocus provider for `name` on a socket of its own. */
    hProvider (name, opts) {
      const s = openSocket(server, 'v4')
      sockets.push(s)
      const p = openProvider(s, name, opts)
      p.socket = s
      hProviders.push(p)
      return p
    },
    /** Ends a provider early (its socket too, for Hocuspocus); teardown skips nothing twice. */
    destroy (p) {
      p.provider.destroy()
      p.socket?.socket.destroy()
    }
  }
}

const text = (p) => p.doc.getText('t').toString()

/**
 * Opens a raw `ws` connection to `url`, sends `bytes` as one binary frame once it is open, and
 * resolves with how the server closed it.
 * @returns {Promise<{ code: number, reason: string, received: Uint8Array[] }>}
 */
async function sendRaw (url, bytes) {
  const ws = new WebSocket(url)
  /** @type {Uint8Array[]} */
  const received = []
  ws.on('message', (data) => received.push(new Uint8Array(data)))
  let errored = null
  ws.on('error', (err) => { errored = err })
  let closed = null
  ws.once('close', (code, reason) => { closed = { code, reason: reason.toString(), received } })
  try {
    await waitFor(() => ws.readyState === WebSocket.OPEN || closed || errored, WAIT_MS, `the raw connection to ${url} to open`)
    if (ws.readyState !== WebSocket.OPEN) throw new Error(`raw connection to ${url} failed: ${errored?.message ?? JSON.stringify(closed)}`)
    ws.send(bytes, { binary: true })
    return await waitFor(
      () => closed,
      WAIT_MS,
      () => `the server to close the raw connection to ${url}; frames received: ${describeFrames(received)}`
    )
  } finally {
    ws.terminate()
  }
}

/** Waits until the y-websocket providers hold every one of their own edits in an echo. */
async function waitEchoed (providers, label) {
  for (const [i, p] of providers.entries()) {
    await waitFor(
      () => echoCoversLocalEdits(p.received, p.doc),
      WAIT_MS,
      () => `${label}: the server to echo provider ${i}'s edits; frames: ${describeFrames(p.received)}`
    )
  }
}

/** Waits until a Hocuspocus provider counts no unsynced changes: every update it sent was stored. */
const waitStored = (p, label) => waitFor(
  () => p.provider.isSynced && p.provider.unsyncedChanges === 0 && !p.provider.hasUnsyncedChanges,
  WAIT_MS,
  () => `${label} to count 0 unsynced changes (has ${p.provider.unsyncedChanges}); ` +
    `frames: ${describeHocuspocusFrames(p.socket.received)}`
)

/** One Hocuspocus frame: routing key `key`, then what `write` appends. */
function hocuspocusFrame (key, write) {
  const enc = encoding.createEncoder()
  encoding.writeVarString(enc, key)
  write(enc)
  return encoding.toUint8Array(enc)
}

/**
 * Sends FRAME_A for document `name` through Hocuspocus framing on a raw socket (token first, as a
 * v4 provider does), and returns the close message the server answers for that document, after
 * checking that the socket itself stays open (a ping is still answered).
 */
async function sendFrameAOverHocuspocus (server, name) {
  const ws = new WebSocket(hocuspocusUrl(server))
  /** @type {Uint8Array[]} */
  const received = []
  ws.on('message', (data) => received.push(new Uint8Array(data)))
  let closed = null
  ws.once('close', (code, reason) => { closed = { code, reason: reason.toString() } })
  ws.on('error', () => {})
  const frames = () => received.map(decodeHocuspocusFrame)
  const picture = () => `frames ${describeHocuspocusFrames(received)}; socket close ${JSON.stringify(closed)}`
  try {
    await waitFor(() => ws.readyState === WebSocket.OPEN || closed, WAIT_MS, 'the raw Hocuspocus socket to open')
    ws.send(hocuspocusFrame(name, (enc) => {
      encoding.writeVarUint(enc, 2) // auth
      encoding.writeVarUint(enc, 0) // token
      encoding.writeVarString(enc, '')
      encoding.writeVarString(enc, '4.8.0')
    }))
    await waitFor(() => frames().some((f) => f.key === name && f.type === 'authenticated'), WAIT_MS, () => `authenticated; ${picture()}`)
    // FRAME_A is a whole y-protocols message; Hocuspocus puts the routing key in front of it.
    ws.send(hocuspocusFrame(name, (enc) => encoding.writeUint8Array(enc, FRAME_A)))
    const close = await waitFor(
      () => frames().find((f) => f.key === name && f.type === 'close'),
      WAIT_MS,
      () => `a close message for ${name}; ${picture()}`
    )
    ws.send(Uint8Array.of(9)) // ping
    await waitFor(() => frames().some((f) => f.type === 'pong'), WAIT_MS, () => `a pong after the close message; ${picture()}`)
    assert.equal(closed, null, 'the Hocuspocus socket stays open: only the document is closed')
    return close
  } finally {
    ws.terminate()
  }
}

test('FRAME_A is refused with 4422 and the document goes on for y-websocket and Hocuspocus, across a SIGKILL',
  { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { server, yProvider, hProvider, destroy } = await setup(t)
    assert.equal(FRAME_A.length, 229)
    const victimUrl = `${server.yjsUrl}/victim`

    const first = await sendRaw(victimUrl, FRAME_A)
    assert.equal(first.code, INVALID_UPDATE, `close code for FRAME_A on a fresh document: ${JSON.stringify(first)}`)
    assert.match(first.reason, /^invalid update/)

    // Nothing of FRAME_A was stored: the first joiners see an empty document, then edit and converge.
    const a = yProvider('victim', { clientID: 1001 })
    const b = yProvider('victim', { clientID: 1002 })
    await waitSynced(a.provider, WAIT_MS, 'provider A to sync')
    await waitSynced(b.provider, WAIT_MS, 'provider B to sync')
    for (const p of [a, b]) {
      assert.equal(text(p), '', 'nothing of FRAME_A reached the document')
      assert.equal(p.doc.getMap('m').size, 0, 'nothing of FRAME_A reached the document')
    }
    const ta = a.doc.getText('t')
    const tb = b.doc.getText('t')
    for (let i = 0; i < 3; i++) {
      ta.insert(ta.length, `a${i} `)
      tb.insert(0, `b${i} `)
    }
    a.doc.getMap('m').set('from', 'a')
    const hasAB = (s) => [0, 1, 2].every((i) => s.includes(`a${i} `) && s.includes(`b${i} `))
    await waitFor(
      () => text(a) === text(b) && hasAB(text(a)) && b.doc.getMap('m').get('from') === 'a',
      WAIT_MS,
      () => `A and B to converge: A=${JSON.stringify(text(a))} B=${JSON.stringify(text(b))}`
    )
    await waitEchoed([a, b], 'after A and B edited')

    // Sent again while peers are connected: the sender alone is closed.
    const again = await sendRaw(victimUrl, FRAME_A)
    assert.equal(again.code, INVALID_UPDATE, `close code for FRAME_A beside connected peers: ${JSON.stringify(again)}`)

    // A Hocuspocus provider on the same document gets the same content, and edits it too.
    const h = hProvider('victim', { clientID: 1003 })
    await waitFor(
      () => h.provider.isSynced && text(h) === text(a) && h.doc.getMap('m').get('from') === 'a',
      WAIT_MS,
      () => `the Hocuspocus provider to load the document: has ${JSON.stringify(text(h))}, want ${JSON.stringify(text(a))}`
    )
    h.doc.getText('t').insert(text(h).length, 'h0 ')
    await waitFor(
      () => text(a).endsWith('h0 ') && text(b) === text(a) && text(h) === text(a),
      WAIT_MS,
      () => `the Hocuspocus edit to reach A and B: A=${JSON.stringify(text(a))} B=${JSON.stringify(text(b))} H=${JSON.stringify(text(h))}`
    )
    await waitStored(h, 'the Hocuspocus provider')

    // FRAME_A through Hocuspocus framing: that document is closed on that socket, the socket goes on.
    const close = await sendFrameAOverHocuspocus(server, 'victim')
    assert.match(close.reason ?? '', /^4422 invalid update/, `close message: ${JSON.stringify(close)}`)

    // None of the connected peers noticed any of it.
    assert.equal(a.closes, 0, 'provider A stayed connected')
    assert.equal(b.closes, 0, 'provider B stayed connected')
    assert.equal(a.provider.wsconnected && b.provider.wsconnected, true)
    assert.deepEqual(h.closed, [], 'the Hocuspocus provider got no close')
    assert.equal(h.socket.socket.status, 'connected', 'the Hocuspocus socket stayed open')
    assert.doesNotMatch(text(a), /hello/, 'nothing of FRAME_A reached the document')
    const converged = text(a)
    assert.equal(text(b), converged)
    assert.equal(text(h), converged)

    // Only the data dir remembers the document after a SIGKILL.
    for (const p of [a, b, h]) destroy(p)
    await server.kill()
    await server.start()

    const y2 = yProvider('victim', { clientID: 1004 })
    const h2 = hProvider('victim', { clientID: 1005 })
    await waitFor(
      () => y2.provider.synced && text(y2) === converged && y2.doc.getMap('m').get('from') === 'a',
      WAIT_MS,
      () => `a fresh y-websocket provider to load the content after SIGKILL: has ${JSON.stringify(text(y2))}, want ${JSON.stringify(converged)}`
    )
    await waitFor(
      () => h2.provider.isSynced && text(h2) === converged,
      WAIT_MS,
      () => `a fresh Hocuspocus provider to load the content after SIGKILL: has ${JSON.stringify(text(h2))}, want ${JSON.stringify(converged)}`
    )
    y2.doc.getText('t').insert(0, 'y-after ')
    h2.doc.getText('t').insert(text(h2).length, 'h-after')
    const edited = (s) => s.startsWith('y-after ') && s.endsWith('h-after') && s.includes(converged)
    await waitFor(
      () => text(y2) === text(h2) && edited(text(y2)),
      WAIT_MS,
      () => `both fresh providers to edit and converge: y=${JSON.stringify(text(y2))} h=${JSON.stringify(text(h2))}`
    )
    await waitEchoed([y2], 'after the restart')
    await waitStored(h2, 'the fresh Hocuspocus provider')
    const final = text(y2)

    // And those edits are durable too.
    destroy(y2)
    destroy(h2)
    await server.kill()
    await server.start()
    const y3 = yProvider('victim', { clientID: 1006 })
    await waitFor(
      () => y3.provider.synced && text(y3) === final,
      WAIT_MS,
      () => `the edits made after the restart to survive another SIGKILL: has ${JSON.stringify(text(y3))}, want ${JSON.stringify(final)}`
    )
  })

test('FRAME_B is refused with 4422; 1,200 edits after it compact and load back after a SIGKILL',
  { timeout: 120_000 }, async (t) => {
    assert.equal(process.env.WEFT_COMPACT_AFTER_UPDATES, undefined, 'this test runs with the default compaction (1000)')
    // Debug logs of the room only, to see the compaction happen.
    const { server, yProvider } = await setup(t, { env: { WEFT_LOG: 'info,weft::rooms::room=debug' } })
    const EDITS = 1200

    const p = yProvider('victim-b', { clientID: 2001 })
    await waitSynced(p.provider, WAIT_MS, 'the editing provider to sync')
    const refused = await sendRaw(`${server.yjsUrl}/victim-b`, FRAME_B)
    assert.equal(refused.code, INVALID_UPDATE, `close code for FRAME_B: ${JSON.stringify(refused)}`)
    assert.match(refused.reason, /^invalid update/)

    // One transaction, so one update message, per edit.
    const t1 = p.doc.getText('t')
    for (let i = 0; i < EDITS; i++) t1.insert(t1.length, `e${i},`)
    const want = Array.from({ length: EDITS }, (_, i) => `e${i},`).join('')
    assert.equal(text(p), want)
    await waitFor(
      () => echoCoversLocalEdits(p.received, p.doc),
      60_000,
      () => `the server to acknowledge all ${EDITS} edits; ${p.received.length} frames received`
    )
    assert.equal(p.closes, 0, 'the editing provider stayed connected through FRAME_B and the edits')

    const compacted = await waitFor(
      () => /compacted.*doc=victim-b.*upto=(\d+)|doc=victim-b.*upto=(\d+).*compacted/.exec(server.stderr),
      WAIT_MS,
      () => `the room to write a snapshot after 1000 updates; stderr:\n${server.stderr.slice(-4000)}`
    )
    const upto = Number(compacted[1] ?? compacted[2])
    assert.ok(upto >= 1000 && upto <= EDITS, `the snapshot covers updates up to ${upto}`)
    const before = await (await fetch(`${server.url}/metrics`)).text()
    assert.match(before, /^weft_snapshot_verification_failures_total 0$/m, before)

    p.provider.destroy()
    await server.kill()
    await server.start()

    const fresh = yProvider('victim-b', { clientID: 2002 })
    await waitFor(
      () => fresh.provider.synced && text(fresh).length === want.length,
      WAIT_MS,
      () => `a fresh provider to load ${want.length} characters after SIGKILL, has ${text(fresh).length}`
    )
    const loaded = text(fresh)
    const missing = Array.from({ length: EDITS }, (_, i) => `e${i},`).filter((e) => !loaded.includes(e))
    assert.deepEqual(missing, [], 'every edit is loaded')
    assert.equal(loaded, want)

    // Loading found nothing to set aside: the snapshot and the log after it load as they are.
    const after = await (await fetch(`${server.url}/metrics`)).text()
    assert.doesNotMatch(after, /^weft_quarantined_items_total\{[^}]*\} [1-9]/m, after)
  })
