// Captures golden Hocuspocus frames from the real provider packages (@hocuspocus/provider 4.x and
// 3.x through the alias hocuspocus-provider-v3) and writes them to
// sync-core/tests/golden/hocuspocus.json, where sync-core/tests/hocuspocus_golden.rs checks the Rust
// codec against them.
//
// Owns: driving each provider over an in-memory stand-in for its WebSocket (no network, no server),
// recording every frame the provider sends (token, sync steps, updates, awareness, stateless, close,
// pong), and building the frames a server sends (authenticated, permission denied, sync status,
// stateless, close, ping) with lib0 and @hocuspocus/common's own writers — each of which is fed to
// both real providers, and kept only if they react to it as intended. Deterministic: fixed client
// ids, session id and token, no clocks in any encoded byte. Does not own any assertion about Weft.
//
// Run with `node golden/hocuspocus.mjs` from compat/. Two runs produce identical output.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { dirname, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'

import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import { writeAuthenticated, writePermissionDenied } from '@hocuspocus/common'
import * as v4 from '@hocuspocus/provider'
import * as v3 from 'hocuspocus-provider-v3'

const compatDir = fileURLToPath(new URL('..', import.meta.url))
const repoDir = fileURLToPath(new URL('../..', import.meta.url))
const outFile = fileURLToPath(new URL('../../sync-core/tests/golden/hocuspocus.json', import.meta.url))

const packages = { v4, v3 }
const TOKEN = 'golden-token'
const SESSION = 'golden-session'

/** @param {string} path */
const installedVersion = (path) =>
  JSON.parse(readFileSync(new URL(`../node_modules/${path}/package.json`, import.meta.url), 'utf8')).version

/** @param {Uint8Array} bytes */
const hex = (bytes) => Buffer.from(bytes).toString('hex')

/** Lets the provider's promise chains (token lookup, connection retry) run to completion. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0))
}

/**
 * Stands in for the `ws` WebSocket the provider would open: records what the provider sends and
 * lets this script play the server.
 */
class FakeSocket {
  /** @type {FakeSocket[]} */
  static instances = []

  constructor (url) {
    this.url = url
    this.readyState = 0
    /** @type {Uint8Array[]} */
    this.sent = []
    this.listeners = new Map()
    FakeSocket.instances.push(this)
  }

  addEventListener (name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set())
    this.listeners.get(name).add(fn)
  }

  removeEventListener (name, fn) {
    this.listeners.get(name)?.delete(fn)
  }

  dispatch (name, event) {
    for (const fn of this.listeners.get(name) ?? []) fn(event)
  }

  send (data) {
    this.sent.push(new Uint8Array(data))
  }

  close () {
    this.readyState = 3
  }

  /** The server accepts the connection. */
  open () {
    this.readyState = 1
    this.dispatch('open', { type: 'open' })
  }

  /** The server sends `frame`. */
  receive (frame) {
    const data = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength)
    this.dispatch('message', { data })
  }

  /** Everything sent since the last call. */
  take () {
    const sent = this.sent
    this.sent = []
    return sent
  }
}

/**
 * A provider of major `version` for document `name`, attached to its own socket stand-in, with an
 * awareness state already set (so the handshake carries one).
 */
async function connect (version, name, { sessionAwareness = false } = {}) {
  FakeSocket.instances = []
  const pkg = packages[version]
  const websocketProvider = new pkg.HocuspocusProviderWebsocket({ url: 'ws://golden.invalid', WebSocketPolyfill: FakeSocket })
  const doc = new Y.Doc()
  doc.clientID = 7
  doc.getText('t').insert(0, 'hello')
  const events = { authenticated: [], denied: [], stateless: [], closed: [], unsynced: [] }
  const config = {
    name,
    document: doc,
    websocketProvider,
    token: TOKEN,
    onAuthenticated: ({ scope }) => events.authenticated.push(scope),
    onAuthenticationFailed: ({ reason }) => events.denied.push(reason),
    onStateless: ({ payload }) => events.stateless.push(payload),
    onClose: ({ event }) => events.closed.push(event.reason),
    onUnsyncedChanges: ({ number }) => events.unsynced.push(number)
  }
  if (sessionAwareness) config.sessionAwareness = true
  const provider = new pkg.HocuspocusProvider(config)
  if (sessionAwareness) provider.sessionId = SESSION
  provider.setAwarenessField('user', { name: 'golden' })
  provider.attach()
  await settle()
  assert.equal(FakeSocket.instances.length, 1, 'the provider opened one socket')
  const socket = FakeSocket.instances[0]
  socket.open()
  await settle()
  const key = sessionAwareness ? `${name}\0${SESSION}` : name
  return { provider, doc, socket, events, key, version }
}

/** A frame the way a server writes it: routing key, then whatever `write` puts after it. */
const serverFrame = (key, write) => {
  const enc = encoding.createEncoder()
  encoding.writeVarString(enc, key)
  write(enc)
  return encoding.toUint8Array(enc)
}

const providerFrames = []
const serverFrames = []

/** Records a frame a provider sent, with what it must decode to. */
const recordProvider = (name, description, conn, frame, expect) => {
  providerFrames.push({ name, provider: conn.version, description, frame_hex: hex(frame), expect })
}

for (const [version, sessionAwareness] of [['v4', false], ['v4', true], ['v3', false]]) {
  const suffix = `${version}${sessionAwareness ? '_session' : ''}`
  const conn = await connect(version, 'golden/doc', { sessionAwareness })
  const { key, socket, doc, provider } = conn
  const versionSent = version === 'v4' ? installedVersion('@hocuspocus/provider') : null

  // On open: the token, then sync step 1 and the local awareness state.
  const [token, step1, awareness, ...rest] = socket.take()
  assert.equal(rest.length, 0, `${suffix}: three frames on open`)
  recordProvider(`${suffix}_token`, `Auth token on open (${version}${version === 'v4' ? ' appends its version' : ' sends no version'}).`, conn, token,
    { kind: 'token', key, token: TOKEN, provider_version: versionSent })
  recordProvider(`${suffix}_sync_step1`, 'Sync step 1 on open, for a doc holding "hello" from client 7.', conn, step1,
    { kind: 'sync_step1', key, payload_hex: hex(Y.encodeStateVector(doc)) })
  recordProvider(`${suffix}_awareness`, 'The local awareness state on open (client 7, user "golden").', conn, awareness,
    { kind: 'awareness', key, payload_hex: hex(awarenessProtocol.encodeAwarenessUpdate(provider.awareness, [7])) })

  // The server's step 1 (an empty state vector) is answered with step 2.
  socket.receive(serverFrame(key, (enc) => {
    encoding.writeVarUint(enc, 0)
    syncProtocol.writeSyncStep1(enc, new Y.Doc())
  }))
  const [step2] = socket.take()
  recordProvider(`${suffix}_sync_step2`, "Sync step 2 answering the server's empty state vector.", conn, step2,
    { kind: 'sync_step2', key, payload_hex: hex(Y.encodeStateAsUpdate(doc, new Uint8Array([0]))) })

  // A local edit goes out as an update.
  const updates = []
  doc.on('update', (u) => updates.push(u))
  doc.getText('t').insert(5, ' world')
  const [update] = socket.take()
  recordProvider(`${suffix}_sync_update`, 'An update inserting " world" after "hello".', conn, update,
    { kind: 'sync_update', key, payload_hex: hex(updates[0]) })

  provider.sendStateless('{"cursor":3}')
  const [stateless] = socket.take()
  recordProvider(`${suffix}_stateless`, 'A stateless message with a JSON payload.', conn, stateless,
    { kind: 'stateless', key, payload: '{"cursor":3}' })

  // A query from the server is answered with every known awareness state.
  socket.receive(serverFrame(key, (enc) => encoding.writeVarUint(enc, 3)))
  const [answer] = socket.take()
  recordProvider(`${suffix}_awareness_answer`, 'The answer to a query-awareness message.', conn, answer,
    { kind: 'awareness', key, payload_hex: hex(awarenessProtocol.encodeAwarenessUpdate(provider.awareness, [7])) })

  if (version === 'v4') {
    socket.receive(new Uint8Array([9]))
    const [pong] = socket.take()
    recordProvider(`${suffix}_pong`, 'The pong a v4 provider answers a ping with.', conn, pong, { kind: 'pong' })
  }

  provider.detach()
  const [close] = socket.take()
  recordProvider(`${suffix}_close`, 'The close message a provider sends when it is detached (or destroyed).', conn, close,
    { kind: 'close', key, reason: null })
  provider.destroy()
  conn.provider.configuration.websocketProvider.destroy()
}

// ---- frames a server sends, each checked against the reaction of every provider it applies to.

/**
 * Builds a server frame for routing key `key` of a fresh connection per provider, feeds it to each
 * and runs `check` on the connection afterwards.
 */
const server = async (name, description, fields, write, check, { versions = ['v4', 'v3'], session = false } = {}) => {
  let frame = null
  for (const version of versions) {
    const conn = await connect(version, 'golden/doc', { sessionAwareness: session })
    conn.socket.take()
    const built = fields.kind === 'ping' ? new Uint8Array([9]) : serverFrame(conn.key, write)
    if (frame) assert.deepEqual(built, frame, `${name}: the same bytes for every provider`)
    frame = built
    conn.socket.receive(built)
    await settle()
    check(conn)
    conn.provider.destroy()
    conn.provider.configuration.websocketProvider.destroy()
  }
  const key = fields.kind === 'ping' ? undefined : (session ? `golden/doc\0${SESSION}` : 'golden/doc')
  serverFrames.push({ name, description, frame_hex: hex(frame), ...(key === undefined ? {} : { key }), ...fields })
}

for (const scope of ['read-write', 'readonly']) {
  await server(`authenticated_${scope.replace('-', '_')}`, `Auth: authenticated with scope "${scope}".`, { kind: 'authenticated', scope },
    (enc) => { encoding.writeVarUint(enc, 2); writeAuthenticated(enc, scope) },
    (conn) => {
      assert.deepEqual(conn.events.authenticated, [scope])
      assert.equal(conn.provider.authorizedScope, scope)
    })
}
await server('authenticated_session', 'Auth: authenticated, addressed with a v4 session-aware key.', { kind: 'authenticated', scope: 'read-write' },
  (enc) => { encoding.writeVarUint(enc, 2); writeAuthenticated(enc, 'read-write') },
  (conn) => assert.deepEqual(conn.events.authenticated, ['read-write']),
  { versions: ['v4'], session: true })
const reason = 'invalid token: ExpiredSignature — refusé'
await server('permission_denied', 'Auth: permission denied with a (non-ASCII) reason.', { kind: 'permission_denied', reason },
  (enc) => { encoding.writeVarUint(enc, 2); writePermissionDenied(enc, reason) },
  (conn) => {
    assert.deepEqual(conn.events.denied, [reason])
    assert.equal(conn.provider.isAuthenticated, false)
  })
for (const applied of [true, false]) {
  await server(`sync_status_${applied ? 'applied' : 'not_applied'}`, `Sync status: ${applied ? '' : 'not '}applied (lib0 varInt ${applied ? 1 : 0}).`,
    { kind: 'sync_status', applied },
    (enc) => { encoding.writeVarUint(enc, 8); encoding.writeVarInt(enc, applied ? 1 : 0) },
    // The handshake counted one unsynced change; only "applied" takes it back.
    (conn) => assert.equal(conn.provider.unsyncedChanges, applied ? 0 : 1))
}
await server('stateless', 'A stateless message relayed to a provider.', { kind: 'stateless', payload: '{"cursor":3}' },
  (enc) => { encoding.writeVarUint(enc, 5); encoding.writeVarString(enc, '{"cursor":3}') },
  (conn) => assert.deepEqual(conn.events.stateless, ['{"cursor":3}']))
await server('close', "The server's close message for one document, with a reason.", { kind: 'close', reason: '4422 invalid update' },
  (enc) => { encoding.writeVarUint(enc, 7); encoding.writeVarString(enc, '4422 invalid update') },
  (conn) => {
    assert.deepEqual(conn.events.closed, ['4422 invalid update'])
    assert.equal(conn.provider.isSynced, false)
  })
await server('ping', 'The one-byte ping; v4 providers answer it with a pong (v3 providers do not know it).', { kind: 'ping' },
  () => {},
  (conn) => assert.deepEqual(conn.socket.take(), [new Uint8Array([10])]),
  { versions: ['v4'] })

const golden = {
  generated_by: relative(repoDir, fileURLToPath(import.meta.url)),
  packages: {
    '@hocuspocus/provider': installedVersion('@hocuspocus/provider'),
    '@hocuspocus/common': installedVersion('@hocuspocus/common'),
    'hocuspocus-provider-v3': installedVersion('hocuspocus-provider-v3'),
    yjs: installedVersion('yjs'),
    lib0: installedVersion('lib0')
  },
  provider_frames: providerFrames,
  server_frames: serverFrames
}

mkdirSync(dirname(outFile), { recursive: true })
writeFileSync(outFile, JSON.stringify(golden, null, 2) + '\n')
console.log(`wrote ${providerFrames.length} provider frames and ${serverFrames.length} server frames to ${relative(compatDir, outFile)}`)
