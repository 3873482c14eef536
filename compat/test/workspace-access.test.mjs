// Workspace documents opened by the real clients with real Weft tokens, on a zero-configuration
// `weft serve`: y-websocket, Hocuspocus (v4 and v3) and automerge-repo. A viewer reads and its edits
// are refused the way each dialect says so (y-websocket: permission-denied and close 4403;
// Hocuspocus: the `readonly` scope and "not applied"; automerge-repo: an `error` message), a
// stranger and an anonymous client are refused, and a member removed while connected is cut off
// within a second. Every test has its own server and is bounded in time.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import * as Automerge from '@automerge/automerge'

import { connectProvider, decodeFrame, startWeft, waitFor, waitSynced } from '../lib/weft.mjs'
import { framesFor, openProvider, openSocket } from '../lib/hocuspocus.mjs'
import { closeRepo, find, findEventually, openRepo, recordErrors, serverPeerId } from '../lib/automerge.mjs'
import { call, createDoc, ok, signup, workspace } from '../lib/api.mjs'

const TEST_TIMEOUT_MS = 30_000
const WAIT_MS = 10_000
/** How soon a removed member's connection must be closed. */
const CUT_OFF_MS = 1_000

const text = (doc) => doc.getText('t').toString()

async function setup (t) {
  const server = await startWeft()
  const cleanups = []
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
    await server.cleanup()
  })
  const { ws, owner, members } = await workspace(server, ['editor', 'viewer'])
  const stranger = await signup(server, 'stranger@example.com')
  return { server, ws, owner, editor: members.editor, viewer: members.viewer, stranger, cleanups }
}

/** Removes `person` from `ws`; resolves with the time the server answered. */
async function remove (server, ws, owner, person) {
  await ok(server, 'DELETE', `/api/workspaces/${ws}/members/${person.id}`, owner.token, undefined, 204)
  return Date.now()
}

test('y-websocket: viewers read, their edits are refused, strangers get nothing, a removed member is cut off', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, ws, owner, editor, viewer, stranger, cleanups } = await setup(t)
  const { id } = await createDoc(server, owner.token, ws, { kind: 'document', crdt: 'yjs', title: 'Plan' })
  const open = (token, opts = {}) => {
    const p = connectProvider(server, id, { ...opts, params: token ? { token } : {} })
    p.closes = []
    p.provider.on('connection-close', (event) => p.closes.push({ code: event?.code, at: Date.now() }))
    p.errors = 0
    p.provider.on('connection-error', () => { p.errors++ })
    cleanups.push(() => { p.provider.destroy(); p.doc.destroy() })
    return p
  }
  const writer = open(editor.token, { clientID: 11 })
  const reader = open(viewer.token, { clientID: 12 })
  const boss = open(owner.token, { clientID: 13 })
  await waitSynced(writer.provider, WAIT_MS, 'the editor')
  await waitSynced(reader.provider, WAIT_MS, 'the viewer')
  await waitSynced(boss.provider, WAIT_MS, 'the owner')

  // Neither a stranger nor an anonymous client gets a single frame of it.
  const outsider = open(stranger.token)
  const anonymous = open(null)
  await waitFor(() => outsider.errors > 0 && anonymous.errors > 0, WAIT_MS, 'both refused')
  assert.equal(outsider.received.length + anonymous.received.length, 0)
  assert.equal(outsider.provider.synced || anonymous.provider.synced, false)
  const { status } = await call(server, 'GET', `/api/docs/${id}`, stranger.token)
  assert.equal(status, 404)

  writer.doc.getText('t').insert(0, 'hello')
  await waitFor(() => text(reader.doc) === 'hello', WAIT_MS, 'the viewer to read the edit')

  // The viewer's edit: permission denied, then 4403; it reaches nobody.
  reader.doc.getText('t').insert(0, 'forged ')
  await waitFor(() => reader.closes.some((c) => c.code === 4403), WAIT_MS, 'the viewer closed with 4403')
  assert.equal(reader.provider.shouldConnect, false, 'y-websocket does not retry a 44xx close')
  const denied = reader.received.flatMap(decodeFrame).filter((m) => m.type === 'permission_denied')
  assert.ok(denied.length >= 1, 'a permission-denied message')
  assert.match(denied[0].reason, /read-only/)
  reader.provider.destroy()
  writer.doc.getText('t').insert(5, '!')
  await waitFor(() => text(boss.doc) === 'hello!', WAIT_MS, () => `the owner to see the editor's next edit, has ${JSON.stringify(text(boss.doc))}`)

  // The editor is removed while connected: closed within a second, and kept out.
  const removedAt = await remove(server, ws, owner, editor)
  await waitFor(() => writer.closes.some((c) => c.code === 4403), WAIT_MS, 'the removed editor to be closed')
  const cut = writer.closes.find((c) => c.code === 4403).at - removedAt
  assert.ok(cut < CUT_OFF_MS, `cut off ${cut} ms after the removal`)
  // y-websocket stops after a 44xx close; a new connection with the same token is refused.
  const again = open(editor.token, { clientID: 14 })
  await waitFor(() => again.errors > 0, WAIT_MS, 'the removed editor refused on reconnect')
  assert.equal(again.received.length, 0)
  writer.doc.getText('t').insert(0, 'too late ')
  boss.doc.getText('t').insert(6, '?')
  await waitFor(() => text(boss.doc) === 'hello!?', WAIT_MS, 'the owner edits on')
  assert.equal(writer.provider.wsconnected, false)
  assert.doesNotMatch(text(boss.doc), /too late/)
})

for (const version of ['v4', 'v3']) {
  test(`Hocuspocus ${version}: a viewer gets the readonly scope and "not applied", a removed member's document is closed`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { server, ws, owner, editor, viewer, stranger, cleanups } = await setup(t)
    const { id } = await createDoc(server, owner.token, ws, { kind: 'document', crdt: 'yjs', title: 'Notes' })
    const sockets = ['editor', 'viewer', 'stranger'].map(() => {
      const s = openSocket(server, version)
      cleanups.push(() => s.socket.destroy())
      return s
    })
    const provider = (socket, token, clientID) => {
      const p = openProvider(socket, id, { token, clientID })
      cleanups.push(() => { p.provider.destroy(); p.doc.destroy() })
      return p
    }
    const writer = provider(sockets[0], editor.token, 21)
    const reader = provider(sockets[1], viewer.token, 22)
    const outsider = provider(sockets[2], stranger.token, 23)
    await waitSynced(writer.provider, WAIT_MS, 'the editor')
    await waitSynced(reader.provider, WAIT_MS, 'the viewer')
    assert.equal(writer.provider.authorizedScope, 'read-write')
    assert.equal(reader.provider.authorizedScope, 'readonly')
    await waitFor(() => outsider.denied.length > 0, WAIT_MS, 'the stranger refused')
    assert.match(outsider.denied[0], /no such document/)

    writer.doc.getText('t').insert(0, 'shared')
    await waitFor(() => text(reader.doc) === 'shared', WAIT_MS, 'the viewer to read')
    reader.doc.getText('t').insert(0, 'forged ')
    await waitFor(
      () => framesFor(sockets[1].received, id).some((f) => f.type === 'sync_status' && !f.applied),
      WAIT_MS,
      'a "not applied" sync status'
    )
    writer.doc.getText('t').insert(6, '!')
    await waitFor(() => text(reader.doc) === 'forged shared!', WAIT_MS, () => `the viewer keeps receiving, has ${JSON.stringify(text(reader.doc))}`)
    assert.equal(text(writer.doc), 'shared!', 'the viewer\'s edit never reached the editor')

    // Removing the editor closes its document (Hocuspocus' close message, 4403) within a second.
    const removedAt = await remove(server, ws, owner, editor)
    await waitFor(
      () => framesFor(sockets[0].received, id).some((f) => f.type === 'close'),
      WAIT_MS,
      'the close message for the removed editor'
    )
    const closed = framesFor(sockets[0].received, id).find((f) => f.type === 'close')
    assert.match(closed.reason, /4403/)
    assert.ok(Date.now() - removedAt < CUT_OFF_MS + 500, 'closed promptly')
  })
}

test('automerge-repo: a viewer reads, its changes get an error, a removed member stops syncing', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, ws, owner, editor, viewer, stranger, cleanups } = await setup(t)
  const { id } = await createDoc(server, owner.token, ws, { kind: 'board', crdt: 'automerge', title: 'Tasks' })
  const repo = (token) => {
    const opened = openRepo(server, { token })
    cleanups.push(() => closeRepo(opened))
    return opened
  }
  const writer = repo(editor.token)
  const reader = repo(viewer.token)
  const outsider = repo(stranger.token)
  for (const [r, label] of [[writer, 'editor'], [reader, 'viewer'], [outsider, 'stranger']]) {
    await waitFor(() => serverPeerId(r) !== undefined, WAIT_MS, `the ${label} handshake`)
  }
  const writerErrors = recordErrors(writer)
  const readerErrors = recordErrors(reader)
  const outsiderErrors = recordErrors(outsider)

  // The editor brings the document's first content under the id the server gave it.
  const handle = writer.repo.import(Automerge.save(Automerge.from({ tasks: [] })), { docId: id })
  handle.change((d) => { d.tasks.push('write tests') })
  const seen = await findEventually(reader.repo, id)
  await waitFor(() => seen.doc()?.tasks?.length === 1, WAIT_MS, 'the viewer to read the task')

  // The stranger cannot open it at all.
  await assert.rejects(find(outsider.repo, id), /unavailable/i)
  assert.ok(outsiderErrors.some((e) => /4403/.test(e)), `an error for the stranger: ${outsiderErrors}`)

  // The viewer's change is refused with an error and reaches nobody.
  seen.change((d) => { d.tasks.push('forged') })
  await waitFor(() => readerErrors.some((e) => /read-only/.test(e)), WAIT_MS, () => `a read-only error: ${readerErrors}`)
  handle.change((d) => { d.tasks.push('review') })
  const boss = repo(owner.token)
  const bossHandle = await find(boss.repo, id)
  await waitFor(() => bossHandle.doc()?.tasks?.length === 2, WAIT_MS, () => `the owner to read two tasks: ${JSON.stringify(bossHandle.doc())}`)
  assert.deepEqual([...bossHandle.doc().tasks], ['write tests', 'review'])

  // The editor is removed: its document ends with an error naming 4403, and its changes stop.
  await remove(server, ws, owner, editor)
  await waitFor(() => writerErrors.some((e) => /4403.*access revoked/.test(e)), CUT_OFF_MS + 500, () => `a revocation error: ${writerErrors}`)
  handle.change((d) => { d.tasks.push('too late') })
  bossHandle.change((d) => { d.tasks.push('owner') })
  const check = repo(owner.token)
  const fresh = await find(check.repo, id)
  await waitFor(() => fresh.doc()?.tasks?.includes('owner'), WAIT_MS, 'the owner\'s change stored')
  assert.ok(!fresh.doc().tasks.includes('too late'), `the removed editor's change was refused: ${JSON.stringify(fresh.doc())}`)
})
