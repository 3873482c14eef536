// automerge-repo compatibility: unmodified `Repo`s with the WebSocket client adapter from npm
// against a real `weft serve` on `/ws/automerge`.
//
// Owns the promises Weft makes to automerge-repo clients: two repos converge on a document through
// the relay, a document survives a server restart and loads in a fresh repo (while the old repo
// reconnects by itself and keeps editing), a document nobody has ends as unavailable, presence
// (ephemeral messages) reaches the other peer, and a Yjs document is refused to automerge-repo for
// that document alone. Every test has its own server and temp data dir and is bounded in time;
// nothing sleeps to synchronise.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { generateAutomergeUrl, parseAutomergeUrl, Presence } from '@automerge/automerge-repo'

import { connectProvider, startWeft, waitFor, waitSynced } from '../lib/weft.mjs'
import { closeRepo, find, findEventually, openRepo, serverPeerId } from '../lib/automerge.mjs'

const TEST_TIMEOUT_MS = 30_000
const WAIT_MS = 10_000

/** A server plus every repo a test opens; all are torn down after the test, pass or fail. */
async function setup (t) {
  const server = await startWeft()
  const opened = []
  t.after(async () => {
    for (const r of opened) await closeRepo(r)
    await server.cleanup()
  })
  return {
    server,
    /** @param {{ peerId?: string }} [opts] */
    open (opts) {
      const r = openRepo(server, opts)
      opened.push(r)
      return r
    }
  }
}

test('two repos converge on a document through weft', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { open } = await setup(t)
  const a = open({ peerId: 'repo-a' })
  const b = open({ peerId: 'repo-b' })

  const handleA = a.repo.create({ title: 'shared', items: [] })
  handleA.change((d) => { d.items.push('from a') })

  const handleB = await findEventually(b.repo, handleA.url)
  await waitFor(() => handleB.doc().items.includes('from a'), WAIT_MS, 'B to receive A\'s item')

  // Concurrent edits on both sides merge to the same document everywhere.
  handleA.change((d) => { d.items.push('a again') })
  handleB.change((d) => { d.items.push('from b'); d.title = 'edited by b' })
  const merged = () => JSON.stringify(handleA.doc()) === JSON.stringify(handleB.doc())
  await waitFor(() => merged() && handleA.doc().items.length === 3, WAIT_MS,
    () => `convergence: A=${JSON.stringify(handleA.doc())} B=${JSON.stringify(handleB.doc())}`)
  assert.deepEqual([...handleA.doc().items].sort(), ['a again', 'from a', 'from b'])
  assert.equal(handleA.doc().title, 'edited by b')
  assert.match(serverPeerId(a), /^weft-[0-9a-f]{16}$/)
})

test('a document survives a server restart and loads in a fresh repo', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, open } = await setup(t)
  const writer = open({ peerId: 'writer' })
  const handle = writer.repo.create({ notes: ['before restart'] })

  // A second repo that finds it proves the server holds it (Weft sends nothing it has not stored).
  const witness = open({ peerId: 'witness' })
  await findEventually(witness.repo, handle.url)
  const before = serverPeerId(writer)

  await server.restart()

  // The writer's adapter reconnects by itself, to a server with a new peer id, and keeps syncing.
  await waitFor(() => serverPeerId(writer) && serverPeerId(writer) !== before, WAIT_MS, 'the writer to rejoin')
  handle.change((d) => { d.notes.push('after restart') })

  const fresh = open({ peerId: 'fresh' })
  const loaded = await find(fresh.repo, handle.url)
  await waitFor(() => loaded.doc().notes.length === 2, WAIT_MS,
    () => `the fresh repo to see both notes, has ${JSON.stringify(loaded.doc())}`)
  assert.deepEqual(loaded.doc().notes, ['before restart', 'after restart'])
})

test('requesting a document nobody has ends as unavailable', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { open } = await setup(t)
  const seeker = open({ peerId: 'seeker' })
  await assert.rejects(find(seeker.repo, generateAutomergeUrl()), /unavailable/)
})

test('presence (ephemeral messages) reaches the other peer', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { open } = await setup(t)
  const a = open({ peerId: 'presence-a' })
  const b = open({ peerId: 'presence-b' })
  const handleA = a.repo.create({ text: 'hello' })
  const handleB = await findEventually(b.repo, handleA.url)

  const raw = []
  handleB.on('ephemeral-message', ({ senderId, message }) => raw.push({ senderId, message }))
  const presenceA = new Presence({ handle: handleA })
  const presenceB = new Presence({ handle: handleB })
  t.after(() => { presenceA.stop(); presenceB.stop() })
  presenceB.start({ initialState: { cursor: 0 }, heartbeatMs: 60_000 })
  presenceA.start({ initialState: { cursor: 0 }, heartbeatMs: 60_000 })

  presenceA.broadcast('cursor', 42)
  await waitFor(() => presenceB.getPeerStates().getStates()['presence-a']?.value?.cursor === 42, WAIT_MS,
    () => `B to see A's cursor, sees ${JSON.stringify(presenceB.getPeerStates().value)}`)
  assert.ok(raw.length > 0 && raw.every((m) => m.senderId === 'presence-a'), 'ephemeral messages name their creator')
})

test('a Yjs document is unavailable to automerge-repo, and the socket goes on', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, open } = await setup(t)
  // A Yjs document whose name happens to be a valid automerge-repo document id.
  const yjsUrl = generateAutomergeUrl()
  const yjs = connectProvider(server, parseAutomergeUrl(yjsUrl).documentId)
  t.after(() => { yjs.provider.destroy(); yjs.doc.destroy() })
  await waitSynced(yjs.provider, WAIT_MS)
  yjs.doc.getText('t').insert(0, 'yjs text')

  const a = open({ peerId: 'confused' })
  const b = open({ peerId: 'other' })
  await assert.rejects(find(a.repo, yjsUrl), /unavailable/)
  // The same repo's socket still syncs Automerge documents.
  const handle = a.repo.create({ ok: true })
  const seen = await findEventually(b.repo, handle.url)
  assert.equal(seen.doc().ok, true)
  assert.equal(yjs.doc.getText('t').toString(), 'yjs text')
})
