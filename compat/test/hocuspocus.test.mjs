// Hocuspocus compatibility: unmodified `HocuspocusProvider`s from npm (v4, and v3 through the alias
// `hocuspocus-provider-v3`) against a real `weft serve` on `/ws/hocuspocus`.
//
// Owns the promises Weft makes to Hocuspocus providers: many documents over one shared socket,
// session-aware routing keys (v4), convergence with y-websocket clients on the same document,
// persistence across a restart, sync status after durable writes (unsynced changes back to 0),
// stateless messages, awareness, closing one document while the socket goes on, and token auth
// (authenticated with a scope, permission denied with a reason, read-only cannot write). Every test
// has its own server and temp data dir and is bounded in time; nothing sleeps to synchronise.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { connectProvider, startWeft, waitFor } from '../lib/weft.mjs'
import {
  describeHocuspocusFrames,
  framesFor,
  openProvider,
  openSocket,
  signToken
} from '../lib/hocuspocus.mjs'

const TEST_TIMEOUT_MS = 30_000
const WAIT_MS = 10_000
const SECRET = 'compat-secret-0123456789'
const FUTURE = 4_000_000_000

/** A server plus every socket and provider a test opens; all are torn down after the test. */
async function setup (t, opts = {}) {
  const server = await startWeft(opts)
  const sockets = []
  const providers = []
  const yProviders = []
  t.after(async () => {
    for (const { provider, doc } of providers) {
      provider.destroy()
      doc.destroy()
    }
    for (const { socket } of sockets) socket.destroy()
    for (const { provider, doc } of yProviders) {
      provider.destroy()
      doc.destroy()
    }
    await server.cleanup()
  })
  return {
    server,
    /** @param {'v4' | 'v3'} version */
    socket (version) {
      const s = openSocket(server, version)
      sockets.push(s)
      return s
    },
    provider (socket, name, opts) {
      const p = openProvider(socket, name, opts)
      providers.push(p)
      return p
    },
    yProvider (room, opts) {
      const p = connectProvider(server, room, opts)
      yProviders.push(p)
      return p
    }
  }
}

const text = (p) => p.doc.getText('t').toString()

const waitSynced = (p, label) => waitFor(() => p.provider.isSynced, WAIT_MS, `${label} to sync`)

/** Waits until the provider counts no unsynced changes: every update it sent was stored. */
const waitStored = (p, socket, label) => waitFor(
  () => p.provider.unsyncedChanges === 0 && !p.provider.hasUnsyncedChanges,
  WAIT_MS,
  () => `${label} to count 0 unsynced changes (has ${p.provider.unsyncedChanges}); ` +
    `frames: ${describeHocuspocusFrames(socket.received)}`
)

for (const version of ['v4', 'v3']) {
  test(`${version}: two providers sharing one socket for two documents converge`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { socket, provider } = await setup(t)
    const s1 = socket(version)
    const s2 = socket(version)
    const a1 = provider(s1, 'notes', { clientID: 11 })
    const b1 = provider(s1, 'tasks', { clientID: 12 })
    const a2 = provider(s2, 'notes', { clientID: 21 })
    const b2 = provider(s2, 'tasks', { clientID: 22 })
    for (const [p, label] of [[a1, 'a1'], [b1, 'b1'], [a2, 'a2'], [b2, 'b2']]) await waitSynced(p, label)

    for (let i = 0; i < 5; i++) {
      a1.doc.getText('t').insert(0, `a1.${i} `)
      a2.doc.getText('t').insert(0, `a2.${i} `)
      b1.doc.getMap('m').set(`b1.${i}`, i)
      b2.doc.getMap('m').set(`b2.${i}`, i)
    }
    await waitFor(
      () => text(a1) === text(a2) && text(a1).split(' ').length === 11 &&
        b1.doc.getMap('m').size === 10 && b2.doc.getMap('m').size === 10,
      WAIT_MS,
      () => `both documents to converge: notes ${JSON.stringify(text(a1))} / ${JSON.stringify(text(a2))}, ` +
        `tasks ${b1.doc.getMap('m').size} / ${b2.doc.getMap('m').size} keys`
    )
    assert.deepEqual(b1.doc.getMap('m').toJSON(), b2.doc.getMap('m').toJSON())
    assert.equal(b1.doc.getText('t').toString(), '', 'edits stay in their own document')
    assert.equal(a1.doc.getMap('m').size, 0, 'edits stay in their own document')
    for (const [p, s, label] of [[a1, s1, 'a1'], [b1, s1, 'b1'], [a2, s2, 'a2'], [b2, s2, 'b2']]) {
      await waitStored(p, s, label)
      assert.equal(p.provider.isAuthenticated, true)
      assert.equal(p.provider.authorizedScope, 'read-write')
    }
    // Every frame on the shared socket is addressed to one of its two documents.
    const keys = new Set(framesFor(s1.received).map((f) => f.key))
    assert.deepEqual([...keys].sort(), ['notes', 'tasks'])
  })

  test(`${version}: a Hocuspocus provider and a y-websocket provider edit the same document`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { socket, provider, yProvider } = await setup(t)
    const s = socket(version)
    const h = provider(s, 'shared', { clientID: 31 })
    const y = yProvider('shared', { clientID: 32 })
    await waitSynced(h, 'hocuspocus provider')
    await waitFor(() => y.provider.synced, WAIT_MS, 'y-websocket provider to sync')

    h.doc.getText('t').insert(0, 'from hocuspocus. ')
    await waitFor(() => text(y) === 'from hocuspocus. ', WAIT_MS, () => `y-websocket to see the edit, has ${JSON.stringify(text(y))}`)
    y.doc.getText('t').insert(text(y).length, 'from y-websocket.')
    await waitFor(
      () => text(h) === 'from hocuspocus. from y-websocket.',
      WAIT_MS,
      () => `hocuspocus to see the edit, has ${JSON.stringify(text(h))}`
    )
    await waitStored(h, s, 'hocuspocus provider')

    // Presence crosses dialects too.
    h.provider.setAwarenessField('user', { name: 'hocus' })
    y.provider.awareness.setLocalStateField('user', { name: 'ywebsocket' })
    const names = (awareness) => [...awareness.getStates().values()].map((s) => s.user?.name).filter(Boolean).sort()
    await waitFor(
      () => names(y.provider.awareness).join() === 'hocus,ywebsocket' && names(h.provider.awareness).join() === 'hocus,ywebsocket',
      WAIT_MS,
      () => `awareness on both sides: y=${names(y.provider.awareness)} h=${names(h.provider.awareness)}`
    )
  })

  test(`${version}: sync status arrives for every update once it is stored`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { socket, provider } = await setup(t)
    const s = socket(version)
    const p = provider(s, 'status', { clientID: 41 })
    await waitSynced(p, 'provider')
    // The handshake step 2 the provider sends in answer to the server's step 1 is counted too.
    await waitStored(p, s, 'provider after the handshake')
    const before = framesFor(s.received, 'status').filter((f) => f.type === 'sync_status').length

    const counts = []
    p.provider.on('unsyncedChanges', ({ number }) => counts.push(number))
    for (let i = 0; i < 10; i++) p.doc.getText('t').insert(i, String(i))
    assert.ok(p.provider.unsyncedChanges > 0, 'edits are counted as unsynced until the server stores them')
    await waitStored(p, s, 'provider after ten edits')
    assert.equal(counts.at(-1), 0)

    const statuses = framesFor(s.received, 'status').filter((f) => f.type === 'sync_status')
    assert.equal(statuses.length - before, 10, `one sync status per update: ${describeHocuspocusFrames(s.received)}`)
    assert.ok(statuses.every((f) => f.applied), 'every update was applied')
  })
}

test('v4: session-aware providers of one document share a socket', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { socket, provider } = await setup(t)
  const s = socket('v4')
  const a = provider(s, 'sessions', { clientID: 51, sessionAwareness: true })
  const b = provider(s, 'sessions', { clientID: 52, sessionAwareness: true })
  const plain = provider(socket('v4'), 'sessions', { clientID: 53 })
  for (const [p, label] of [[a, 'a'], [b, 'b'], [plain, 'plain']]) await waitSynced(p, label)

  a.doc.getText('t').insert(0, 'A')
  await waitFor(() => text(b) === 'A' && text(plain) === 'A', WAIT_MS, () => `the edit to reach b and plain: ${text(b)} ${text(plain)}`)
  plain.doc.getText('t').insert(1, 'P')
  b.doc.getText('t').insert(0, 'B')
  await waitFor(
    () => text(a) === text(b) && text(b) === text(plain) && text(a).length === 3,
    WAIT_MS,
    () => `all three to converge: ${text(a)} ${text(b)} ${text(plain)}`
  )
  await waitStored(a, s, 'a')
  await waitStored(b, s, 'b')

  // Replies carry the whole routing key, so each provider gets its own frames.
  const keys = new Set(framesFor(s.received).map((f) => f.key))
  assert.deepEqual([...keys].sort(), [`sessions\0${a.provider.sessionId}`, `sessions\0${b.provider.sessionId}`].sort())
})

test('v4: state survives a server restart and offline edits merge', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, socket, provider } = await setup(t)
  const s1 = socket('v4')
  const s2 = socket('v4')
  const a = provider(s1, 'durable', { clientID: 61 })
  const b = provider(s2, 'durable', { clientID: 62 })
  await waitSynced(a, 'a')
  await waitSynced(b, 'b')
  a.doc.getText('t').insert(0, 'base|')
  await waitStored(a, s1, 'a')
  await waitFor(() => text(b) === 'base|', WAIT_MS, () => `b to receive the base text, has ${JSON.stringify(text(b))}`)

  await server.stop()
  await waitFor(() => !a.provider.isSynced && !b.provider.isSynced, WAIT_MS, 'both providers to see the server go')
  a.doc.getText('t').insert(text(a).length, 'A offline|')
  b.doc.getText('t').insert(0, 'B offline|')

  await server.restart()
  await waitFor(
    () => a.provider.isSynced && b.provider.isSynced && text(a) === text(b) &&
      text(a).includes('A offline|') && text(a).includes('B offline|') && text(a).includes('base|'),
    WAIT_MS,
    () => `both providers to reconnect and merge: a=${JSON.stringify(text(a))} b=${JSON.stringify(text(b))}`
  )
  await waitStored(a, s1, 'a after the restart')
  await waitStored(b, s2, 'b after the restart')
  const merged = text(a)

  await server.restart()
  const fresh = provider(socket('v4'), 'durable', { clientID: 63 })
  await waitFor(
    () => fresh.provider.isSynced && text(fresh) === merged,
    WAIT_MS,
    () => `a fresh provider to load the merged state: has ${JSON.stringify(text(fresh))}, want ${JSON.stringify(merged)}`
  )
})

test('v4: stateless messages reach the other providers of the document only', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { socket, provider } = await setup(t)
  const s1 = socket('v4')
  const s2 = socket('v4')
  const sender = provider(s1, 'chat', { clientID: 71 })
  const other = provider(s1, 'elsewhere', { clientID: 72 })
  const receiver = provider(s2, 'chat', { clientID: 73 })
  const v3 = provider(socket('v3'), 'chat', { clientID: 74 })
  for (const [p, label] of [[sender, 'sender'], [other, 'other'], [receiver, 'receiver'], [v3, 'v3']]) await waitSynced(p, label)

  sender.provider.sendStateless(JSON.stringify({ kind: 'ping', n: 1 }))
  await waitFor(
    () => receiver.stateless.length === 1 && v3.stateless.length === 1,
    WAIT_MS,
    () => `the stateless message to arrive: receiver ${receiver.stateless} v3 ${v3.stateless}`
  )
  assert.deepEqual(JSON.parse(receiver.stateless[0]), { kind: 'ping', n: 1 })
  // A round trip on the sender's socket orders everything sent before it.
  receiver.provider.sendStateless('reply')
  await waitFor(() => sender.stateless.includes('reply'), WAIT_MS, 'the reply to reach the sender')
  assert.deepEqual(sender.stateless, ['reply'], 'the sender does not get its own message back')
  assert.deepEqual(other.stateless, [], 'another document on the same socket gets nothing')
})

test('v4: closing one document leaves the other documents on the socket working', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { socket, provider } = await setup(t)
  const s1 = socket('v4')
  const s2 = socket('v4')
  const leaving = provider(s1, 'leaving', { clientID: 81 })
  const staying = provider(s1, 'staying', { clientID: 82 })
  const watcher = provider(s2, 'leaving', { clientID: 83 })
  const peer = provider(s2, 'staying', { clientID: 84 })
  for (const [p, label] of [[leaving, 'leaving'], [staying, 'staying'], [watcher, 'watcher'], [peer, 'peer']]) await waitSynced(p, label)
  leaving.provider.setAwarenessField('user', { name: 'leaver' })
  await waitFor(() => watcher.provider.awareness.getStates().has(81), WAIT_MS, 'the watcher to see the leaver')

  // Destroying a provider detaches it, which sends Hocuspocus' close message for its document.
  leaving.provider.destroy()
  await waitFor(() => !watcher.provider.awareness.getStates().has(81), WAIT_MS, "the leaver's presence to be removed")
  staying.doc.getText('t').insert(0, 'still here')
  await waitFor(() => text(peer) === 'still here', WAIT_MS, () => `the staying document to sync, peer has ${JSON.stringify(text(peer))}`)
  await waitStored(staying, s1, 'staying')
  assert.equal(s1.socket.status, 'connected', 'the shared socket stayed open')
})

test('tokens: authenticated with a scope, refused with a reason, read-only cannot write', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { socket, provider } = await setup(t, { env: { WEFT_JWT_SECRET: SECRET } })
  const readWrite = signToken(SECRET, { sub: 'ann', exp: FUTURE })
  const readonly = signToken(SECRET, { sub: 'bob', exp: FUTURE, scope: 'readonly' })
  const forged = signToken('some-other-secret-0123456789', { sub: 'eve', exp: FUTURE })
  const elsewhere = signToken(SECRET, { sub: 'cy', exp: FUTURE, docs: ['other/*'] })

  for (const version of ['v4', 'v3']) {
    const s = socket(version)
    const doc = `secret-${version}`
    const writer = provider(s, doc, { clientID: 91, token: readWrite })
    const rs = socket(version)
    const reader = provider(rs, doc, { clientID: 92, token: readonly })
    const bad = provider(s, `${doc}-forged`, { token: forged })
    const missing = provider(s, `${doc}-missing`, { token: null })
    const wrongDoc = provider(s, `${doc}-elsewhere`, { token: elsewhere })

    await waitSynced(writer, `${version} writer`)
    await waitSynced(reader, `${version} reader`)
    assert.equal(writer.provider.authorizedScope, 'read-write')
    assert.equal(reader.provider.authorizedScope, 'readonly')
    await waitFor(
      () => bad.denied.length > 0 && missing.denied.length > 0 && wrongDoc.denied.length > 0,
      WAIT_MS,
      () => `three refusals: ${describeHocuspocusFrames(s.received)}`
    )
    assert.match(bad.denied[0], /invalid token/)
    assert.match(missing.denied[0], /token is required/)
    assert.match(wrongDoc.denied[0], /does not grant access/)
    for (const p of [bad, missing, wrongDoc]) {
      assert.equal(p.provider.isAuthenticated, false)
      assert.equal(p.provider.isSynced, false)
    }

    writer.doc.getText('t').insert(0, 'written')
    await waitFor(() => text(reader) === 'written', WAIT_MS, 'the reader to receive the edit')
    await waitStored(reader, rs, `${version} reader after its handshake`)

    // The read-only provider's edit is answered with "not applied" and reaches nobody.
    reader.doc.getText('t').insert(0, 'forbidden ')
    await waitFor(
      () => framesFor(rs.received, doc).some((f) => f.type === 'sync_status' && !f.applied),
      WAIT_MS,
      () => `a "not applied" sync status: ${describeHocuspocusFrames(rs.received)}`
    )
    writer.doc.getText('t').insert(7, '!')
    await waitFor(() => text(reader) === 'forbidden written!', WAIT_MS, () => `the reader to keep receiving, has ${JSON.stringify(text(reader))}`)
    await waitStored(writer, s, `${version} writer`)
    assert.equal(text(writer), 'written!', 'the read-only edit never reached the writer')
    assert.equal(reader.provider.unsyncedChanges, 1, 'the refused edit stays unsynced')
    assert.equal(rs.socket.status, 'connected', 'a refused write does not close the socket')
  }
})
