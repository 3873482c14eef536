// Restore reaches the real clients: a version restored over `POST /api/docs/{id}/versions/{v}/restore`
// arrives at a connected, unmodified `y-websocket` provider and `@automerge/automerge-repo` client
// as an ordinary update, and a client that edited offline meanwhile merges its edit into the
// restored text; and blame over three members' automerge-repo clients names who wrote each span
// (docs/history.md). Every test has its own server and is bounded in time.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import * as Automerge from '@automerge/automerge'

import { connectProvider, startWeft, waitFor, waitSynced } from '../lib/weft.mjs'
import { closeRepo, findEventually, openRepo, serverPeerId } from '../lib/automerge.mjs'
import { call, createDoc, ok, workspace } from '../lib/api.mjs'

const TEST_TIMEOUT_MS = 30_000
const WAIT_MS = 10_000

async function setup (t) {
  const server = await startWeft()
  const cleanups = []
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
    await server.cleanup()
  })
  const { ws, owner } = await workspace(server, [])
  const open = async (crdt) => (await createDoc(server, owner.token, ws, { kind: 'document', crdt, title: 'notes' })).id
  /** Waits until the document's plain text over REST is `expected`. */
  const textIs = async (doc, expected) => {
    let last
    await waitFor(async () => {
      const { body } = await call(server, 'GET', `/api/docs/${doc}/content`, owner.token)
      last = (body.blocks ?? []).map((b) => b.spans.map((s) => s.text).join('')).join('\n')
      return last === expected
    }, WAIT_MS, () => `REST text ${JSON.stringify(last)}, expected ${JSON.stringify(expected)}`)
  }
  return { server, owner, open, textIs, cleanups }
}

test('a restore reaches a connected y-websocket provider and merges an offline edit', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, open, textIs, cleanups } = await setup(t)
  const doc = await open('yjs')
  const a = connectProvider(server, doc, { params: { token: owner.token } })
  const c = connectProvider(server, doc, { params: { token: owner.token } })
  for (const p of [a, c]) cleanups.push(() => { p.provider.destroy(); p.doc.destroy() })
  for (const p of [a, c]) await waitSynced(p.provider, WAIT_MS, 'synced')

  a.doc.getText('content').insert(0, 'The quick brown fox')
  await textIs(doc, 'The quick brown fox')
  const version = await ok(server, 'POST', `/api/docs/${doc}/versions`, owner.token, { name: 'Draft' }, 201)
  a.doc.getText('content').delete(4, 12) // "The fox"
  await textIs(doc, 'The fox')
  await waitFor(() => c.doc.getText('content').toString() === 'The fox', WAIT_MS, 'C has the edit')

  // C goes offline and keeps typing; meanwhile the version is restored over REST.
  c.provider.disconnect()
  c.doc.getText('content').insert(0, '>> ')
  const made = await ok(server, 'POST', `/api/docs/${doc}/versions/${version.id}/restore`, owner.token, undefined, 201)
  assert.equal(made.kind, 'restore')
  await waitFor(() => a.doc.getText('content').toString() === 'The quick brown fox', WAIT_MS,
    () => `A converges: ${a.doc.getText('content').toString()}`)

  // C comes back: its offline edit merges with the restored text, everywhere.
  c.provider.connect()
  const merged = '>> The quick brown fox'
  for (const [name, p] of [['A', a], ['C', c]]) {
    await waitFor(() => p.doc.getText('content').toString() === merged, WAIT_MS,
      () => `${name} merged: ${p.doc.getText('content').toString()}`)
  }
  await textIs(doc, merged)
})

test('a restore reaches a connected automerge-repo client and merges an offline edit', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, open, textIs, cleanups } = await setup(t)
  const doc = await open('automerge')
  const opened = openRepo(server, { token: owner.token })
  cleanups.push(() => closeRepo(opened))
  await waitFor(() => serverPeerId(opened) !== undefined, WAIT_MS, 'handshake')
  const handle = opened.repo.import(Automerge.save(Automerge.from({ content: 'The quick brown fox' })), { docId: doc })
  await textIs(doc, 'The quick brown fox')
  const version = await ok(server, 'POST', `/api/docs/${doc}/versions`, owner.token, { name: 'Draft' }, 201)
  handle.change((d) => Automerge.splice(d, ['content'], 4, 12))
  await textIs(doc, 'The fox')

  // An offline copy (a client that went away with this state) edits concurrently.
  let offline = Automerge.clone(handle.doc())
  offline = Automerge.change(offline, (d) => Automerge.splice(d, ['content'], 0, 0, '>> '))
  await ok(server, 'POST', `/api/docs/${doc}/versions/${version.id}/restore`, owner.token, undefined, 201)
  await waitFor(() => handle.doc().content === 'The quick brown fox', WAIT_MS,
    () => `the client converges: ${handle.doc().content}`)

  // It returns: its edit merges with the restored text, on the client and on the server.
  handle.update((d) => Automerge.merge(d, offline))
  const merged = '>> The quick brown fox'
  assert.equal(handle.doc().content, merged)
  await textIs(doc, merged)
})

test('blame names the automerge-repo client of each of three members', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const server = await startWeft()
  const repos = []
  t.after(async () => {
    for (const opened of repos) await closeRepo(opened)
    await server.cleanup()
  })
  const { ws, owner, members } = await workspace(server, ['admin', 'editor'])
  const doc = (await createDoc(server, owner.token, ws, { kind: 'document', crdt: 'automerge', title: 'notes' })).id
  const connect = async (who) => {
    const opened = openRepo(server, { token: who.token })
    repos.push(opened)
    await waitFor(() => serverPeerId(opened) !== undefined, WAIT_MS, 'handshake')
    return opened
  }
  const blameText = async () => (await ok(server, 'GET', `/api/docs/${doc}/blame`, owner.token)).text

  // The owner writes the first words; the admin and the editor each open the document in their
  // own repo and type in turn, interleaved with what is already there.
  const first = await connect(owner)
  const handle = first.repo.import(Automerge.save(Automerge.from({ content: 'alpha ' })), { docId: doc })
  await waitFor(async () => (await blameText()) === 'alpha ', WAIT_MS, 'the owner\'s text arrives')
  const turns = [
    [members.admin, 6, 'beta ', 'alpha beta '],
    [members.editor, 0, 'gamma ', 'gamma alpha beta '],
    [members.admin, 17, 'delta', 'gamma alpha beta delta']
  ]
  for (const [who, at, word, expected] of turns) {
    const opened = await connect(who)
    const theirs = await findEventually(opened.repo, handle.url)
    await waitFor(() => theirs.doc().content?.length === expected.length - word.length, WAIT_MS, 'the text so far')
    theirs.change((d) => Automerge.splice(d, ['content'], at, 0, word))
    await waitFor(async () => (await blameText()) === expected, WAIT_MS, `${expected} arrives`)
  }

  const blame = await ok(server, 'GET', `/api/docs/${doc}/blame`, owner.token)
  const spans = blame.spans.map((s) => [s.text, s.author?.user])
  assert.deepEqual(spans, [
    ['gamma ', members.editor.id],
    ['alpha ', owner.id],
    ['beta ', members.admin.id],
    ['delta', members.admin.id]
  ])
})
