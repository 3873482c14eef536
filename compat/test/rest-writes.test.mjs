// REST writes reach the real clients live: a message posted, edited and reacted to over
// `/api/docs/{id}/messages…`, a task moved over `/api/docs/{id}/tasks/{task}`, arrive at an
// unmodified `y-websocket` provider, a Hocuspocus v4 provider and an `@automerge/automerge-repo`
// client while they are connected — the server's writes are ordinary CRDT updates through the
// document's room. A client's offline edit merges with a REST write made meanwhile; presence and
// typing travel between real clients with the field names of docs/schemas.md. Every test has its
// own server and is bounded in time.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { connectProvider, startWeft, waitFor, waitSynced } from '../lib/weft.mjs'
import { openProvider, openSocket } from '../lib/hocuspocus.mjs'
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
  const open = async (kind, crdt = 'yjs') => (await createDoc(server, owner.token, ws, { kind, crdt, title: kind })).id
  return { server, owner, open, cleanups }
}

/** A message's body in a Yjs channel, as a client's copy holds it. */
const yBody = (doc, id) => doc.getMap('messages').get(id)?.get('body')?.toString()

test('y-websocket and Hocuspocus providers see REST messages and task moves live', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, open, cleanups } = await setup(t)
  const channel = await open('channel')
  const y = connectProvider(server, channel, { params: { token: owner.token } })
  cleanups.push(() => { y.provider.destroy(); y.doc.destroy() })
  await waitSynced(y.provider, WAIT_MS, 'y-websocket synced')
  const s = openSocket(server, 'v4')
  cleanups.push(() => s.socket.destroy())
  const h = openProvider(s, channel, { token: owner.token })
  cleanups.push(() => { h.provider.destroy(); h.doc.destroy() })
  await waitSynced(h.provider, WAIT_MS, 'Hocuspocus synced')

  const posted = await ok(server, 'POST', `/api/docs/${channel}/messages`, owner.token, { body: 'From REST <@bob>' }, 201)
  for (const [name, doc] of [['y-websocket', y.doc], ['Hocuspocus', h.doc]]) {
    await waitFor(() => yBody(doc, posted.id) === 'From REST <@bob>', WAIT_MS, `${name} sees the post`)
    assert.equal(doc.getMap('messages').get(posted.id).get('author'), owner.id)
  }
  await ok(server, 'PATCH', `/api/docs/${channel}/messages/${posted.id}`, owner.token, { body: 'Edited over REST' })
  await ok(server, 'PUT', `/api/docs/${channel}/messages/${posted.id}/reactions/${encodeURIComponent('🎉')}`, owner.token, undefined, 204)
  for (const [name, doc] of [['y-websocket', y.doc], ['Hocuspocus', h.doc]]) {
    await waitFor(() => yBody(doc, posted.id) === 'Edited over REST', WAIT_MS, `${name} sees the edit`)
    await waitFor(() => doc.getMap('messages').get(posted.id).get('reactions')?.get('🎉')?.get(owner.id) === true, WAIT_MS, `${name} sees the reaction`)
  }

  // A task board: the provider sees a REST-created task move between columns.
  const board = await open('board')
  const b = connectProvider(server, board, { params: { token: owner.token } })
  cleanups.push(() => { b.provider.destroy(); b.doc.destroy() })
  await waitSynced(b.provider, WAIT_MS, 'board synced')
  for (const [id, name] of [['todo', 'To do'], ['done', 'Done']]) {
    await ok(server, 'POST', `/api/docs/${board}/columns`, owner.token, { id, name }, 201)
  }
  const task = await ok(server, 'POST', `/api/docs/${board}/tasks`, owner.token, { title: 'Ship', column: 'todo' }, 201)
  await waitFor(() => b.doc.getMap('tasks').get(task.id)?.get('column') === 'todo', WAIT_MS, 'the task arrives')
  assert.deepEqual(b.doc.getArray('columns').toJSON().map((c) => c.id), ['todo', 'done'])
  await ok(server, 'PATCH', `/api/docs/${board}/tasks/${task.id}`, owner.token, { column: 'done', assignees: [owner.id] })
  await waitFor(() => b.doc.getMap('tasks').get(task.id).get('column') === 'done', WAIT_MS, 'the move arrives')
  assert.deepEqual(b.doc.getMap('tasks').get(task.id).get('assignees').toJSON(), [owner.id])
})

test('an offline y-websocket edit merges with a REST edit made meanwhile', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, open, cleanups } = await setup(t)
  const channel = await open('channel')
  const posted = await ok(server, 'POST', `/api/docs/${channel}/messages`, owner.token, { body: 'launch on friday' }, 201)
  const y = connectProvider(server, channel, { params: { token: owner.token } })
  cleanups.push(() => { y.provider.destroy(); y.doc.destroy() })
  await waitSynced(y.provider, WAIT_MS, 'synced')
  y.provider.disconnect()
  y.doc.getMap('messages').get(posted.id).get('body').insert('launch on friday'.length, ' evening')
  await ok(server, 'PATCH', `/api/docs/${channel}/messages/${posted.id}`, owner.token, { body: 'launch on monday' })
  y.provider.connect()
  await waitFor(() => yBody(y.doc, posted.id) === 'launch on monday evening', WAIT_MS, () => `merged: ${yBody(y.doc, posted.id)}`)
  let last
  await waitFor(async () => {
    last = await call(server, 'GET', `/api/docs/${channel}/messages`, owner.token)
    return last.body.messages?.[0]?.body === 'launch on monday evening'
  }, WAIT_MS, () => JSON.stringify(last))
})

test('an automerge-repo client sees REST messages live', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, open, cleanups } = await setup(t)
  const channel = await open('channel', 'automerge')
  const first = await ok(server, 'POST', `/api/docs/${channel}/messages`, owner.token, { body: 'First, from REST' }, 201)
  const opened = openRepo(server, { token: owner.token })
  cleanups.push(() => closeRepo(opened))
  await waitFor(() => serverPeerId(opened) !== undefined, WAIT_MS, 'handshake')
  const handle = await findEventually(opened.repo, channel)
  assert.equal(handle.doc().messages[first.id].body, 'First, from REST')
  const second = await ok(server, 'POST', `/api/docs/${channel}/messages`, owner.token, { body: 'Second, live', parent: first.id }, 201)
  await waitFor(() => handle.doc().messages[second.id]?.body === 'Second, live', WAIT_MS, 'the live post arrives')
  assert.equal(handle.doc().messages[second.id].parent, first.id)
  // And the client's own reply reads back over REST.
  handle.change((d) => { d.messages['from-client'] = { author: owner.id, body: 'Reply from the client', at: Date.now() + 10, parent: first.id } })
  let thread
  await waitFor(async () => {
    thread = await call(server, 'GET', `/api/docs/${channel}/messages/${first.id}/thread`, owner.token)
    return thread.body.replies?.length === 2
  }, WAIT_MS, () => JSON.stringify(thread))
})

test('presence and typing travel with the fields of docs/schemas.md', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, open, cleanups } = await setup(t)
  // Yjs awareness between two y-websocket providers.
  const channel = await open('channel')
  const [a, b] = [0, 1].map(() => connectProvider(server, channel, { params: { token: owner.token } }))
  for (const p of [a, b]) cleanups.push(() => { p.provider.destroy(); p.doc.destroy() })
  for (const p of [a, b]) await waitSynced(p.provider, WAIT_MS, 'synced')
  a.provider.awareness.setLocalStateField('user', { id: owner.id, name: 'Owner', color: '#c33' })
  a.provider.awareness.setLocalStateField('typing', { in: 'channel', at: Date.now() })
  const typing = () => [...b.provider.awareness.getStates().values()]
    .filter((s) => s.typing && Date.now() - s.typing.at < 5000)
    .map((s) => s.user?.id)
  await waitFor(() => typing().includes(owner.id), WAIT_MS, 'B sees A typing')
  a.provider.awareness.setLocalStateField('typing', null)
  await waitFor(() => typing().length === 0, WAIT_MS, 'B sees A stop')

  // automerge-repo ephemeral messages between two clients.
  const am = await open('channel', 'automerge')
  await ok(server, 'POST', `/api/docs/${am}/messages`, owner.token, { body: 'so the document has content' }, 201)
  const repos = [0, 1].map(() => openRepo(server, { token: owner.token }))
  for (const r of repos) cleanups.push(() => closeRepo(r))
  for (const r of repos) await waitFor(() => serverPeerId(r) !== undefined, WAIT_MS, 'handshake')
  const [ha, hb] = await Promise.all(repos.map((r) => findEventually(r.repo, am)))
  const seen = []
  hb.on('ephemeral-message', ({ message }) => seen.push(message))
  await waitFor(() => {
    ha.broadcast({ user: { id: owner.id, name: 'Owner', color: '#c33' }, typing: { in: 'channel', at: Date.now() } })
    return seen.some((m) => m.user?.id === owner.id && m.typing?.in === 'channel')
  }, WAIT_MS, 'B receives A typing')
})
