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

/** What each role may do to a workspace document (the table in docs/access.md). */
const ROLES = [
  { role: 'owner', reads: true, writes: true },
  { role: 'admin', reads: true, writes: true },
  { role: 'editor', reads: true, writes: true },
  { role: 'commenter', reads: true, writes: false },
  { role: 'viewer', reads: true, writes: false },
  { role: 'stranger', reads: false, writes: false }
]

/** A workspace with one person per role, and a Yjs and an Automerge document in it. */
async function everyRole (t) {
  const server = await startWeft()
  const cleanups = []
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
    await server.cleanup()
  })
  const { ws, owner, members } = await workspace(server, ['admin', 'editor', 'commenter', 'viewer'])
  const people = { ...members, owner, stranger: await signup(server, 'stranger@example.com') }
  const yjs = (await createDoc(server, owner.token, ws, { kind: 'document', crdt: 'yjs', title: 'Y' })).id
  const am = (await createDoc(server, owner.token, ws, { kind: 'board', crdt: 'automerge', title: 'A' })).id
  return { server, people, yjs, am, cleanups }
}

test('every role on every dialect: who reads, who writes', { timeout: 60_000 }, async (t) => {
  const { server, people, yjs, am, cleanups } = await everyRole(t)
  // The owner's watchers see what gets through, on each CRDT.
  const watcher = connectProvider(server, yjs, { params: { token: people.owner.token } })
  cleanups.push(() => { watcher.provider.destroy(); watcher.doc.destroy() })
  await waitSynced(watcher.provider, WAIT_MS, 'the owner watcher')
  const ownerRepo = openRepo(server, { token: people.owner.token })
  cleanups.push(() => closeRepo(ownerRepo))
  const seed = ownerRepo.repo.import(Automerge.save(Automerge.from({ by: [] })), { docId: am })
  seed.change((d) => { d.by.push('seed') })

  for (const { role, reads, writes } of ROLES) {
    const token = people[role].token
    // y-websocket
    const y = connectProvider(server, yjs, { params: { token } })
    const closes = []
    y.provider.on('connection-close', (event) => closes.push(event?.code))
    let errors = 0
    y.provider.on('connection-error', () => { errors++ })
    cleanups.push(() => { y.provider.destroy(); y.doc.destroy() })
    if (!reads) {
      await waitFor(() => errors > 0, WAIT_MS, `${role}: y-websocket refused`)
      assert.equal(y.received.length, 0, `${role}: nothing sent to a stranger`)
    } else {
      await waitSynced(y.provider, WAIT_MS, `${role}: y-websocket synced`)
      y.doc.getText('t').insert(0, `[y ${role}]`)
      if (writes) {
        await waitFor(() => text(watcher.doc).includes(`[y ${role}]`), WAIT_MS, `${role}: y-websocket write arrives`)
      } else {
        await waitFor(() => closes.includes(4403), WAIT_MS, `${role}: y-websocket write refused with 4403`)
      }
    }

    // Hocuspocus v4
    const s = openSocket(server, 'v4')
    cleanups.push(() => s.socket.destroy())
    const h = openProvider(s, yjs, { token })
    cleanups.push(() => { h.provider.destroy(); h.doc.destroy() })
    if (!reads) {
      await waitFor(() => h.denied.length > 0, WAIT_MS, `${role}: Hocuspocus denied`)
    } else {
      await waitSynced(h.provider, WAIT_MS, `${role}: Hocuspocus synced`)
      assert.equal(h.provider.authorizedScope, writes ? 'read-write' : 'readonly', `${role}: scope`)
      h.doc.getText('t').insert(0, `[h ${role}]`)
      if (writes) {
        await waitFor(() => text(watcher.doc).includes(`[h ${role}]`), WAIT_MS, `${role}: Hocuspocus write arrives`)
      } else {
        await waitFor(
          () => framesFor(s.received, yjs).some((f) => f.type === 'sync_status' && !f.applied),
          WAIT_MS,
          `${role}: Hocuspocus write not applied`
        )
      }
    }

    // automerge-repo
    const r = openRepo(server, { token })
    cleanups.push(() => closeRepo(r))
    await waitFor(() => serverPeerId(r) !== undefined, WAIT_MS, `${role}: automerge-repo handshake`)
    const errorsSeen = recordErrors(r)
    if (!reads) {
      await assert.rejects(find(r.repo, am), /unavailable/i, `${role}: automerge-repo refused`)
    } else {
      const handle = await findEventually(r.repo, am)
      handle.change((d) => { d.by.push(role) })
      if (writes) {
        await waitFor(() => seed.doc().by.includes(role), WAIT_MS, `${role}: automerge-repo write arrives`)
      } else {
        await waitFor(() => errorsSeen.some((e) => /read-only/.test(e)), WAIT_MS, `${role}: automerge-repo write refused`)
      }
    }
  }
  // Nothing of the refused writes reached anyone.
  for (const { role, writes } of ROLES.filter((r) => !r.writes)) {
    assert.doesNotMatch(text(watcher.doc), new RegExp(`\\[. ${role}\\]`), `${role}'s Yjs writes`)
    assert.equal(seed.doc().by.includes(role), writes, `${role}'s Automerge write`)
  }
})
