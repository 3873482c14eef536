// The document layouts of docs/schemas.md, written by the real clients and read back over REST:
// a `yjs` client (through y-websocket) writes a document's text and an anchored comment, a task, a message with a reply
// and a reaction, and a shape exactly as the schema examples do; an `@automerge/automerge-repo`
// client writes a task to an Automerge board. The server's projections read each back through
// `/api/docs/{id}/…`. Every test has its own server and is bounded in time.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import * as Y from 'yjs'
import * as Automerge from '@automerge/automerge'

import { connectProvider, startWeft, waitFor, waitSynced } from '../lib/weft.mjs'
import { closeRepo, openRepo, serverPeerId } from '../lib/automerge.mjs'
import { call, createDoc, workspace } from '../lib/api.mjs'

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
  const open = async (kind, crdt = 'yjs') => {
    const { id } = await createDoc(server, owner.token, ws, { kind, crdt, title: kind })
    return id
  }
  const provider = async (id) => {
    const p = connectProvider(server, id, { params: { token: owner.token } })
    cleanups.push(() => { p.provider.destroy(); p.doc.destroy() })
    await waitSynced(p.provider, WAIT_MS, `${id} synced`)
    return p.doc
  }
  /** Polls a REST read until `ready` holds for its body (the write travels over the socket). */
  const readUntil = async (path, ready) => {
    let last
    await waitFor(async () => {
      last = await call(server, 'GET', path, owner.token)
      return last.status === 200 && ready(last.body)
    }, WAIT_MS, () => `${path}: ${JSON.stringify(last)}`)
    return last.body
  }
  return { server, owner, open, provider, readUntil, cleanups }
}

test('yjs clients write every layout as docs/schemas.md shows; REST reads them back', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { open, provider, readUntil } = await setup(t)

  // document: plain text in `content` (a Tiptap editor would write the `default` fragment).
  const docId = await open('document')
  const doc = await provider(docId)
  doc.getText('content').insert(0, 'First paragraph\nSecond *paragraph*')
  const blocks = await readUntil(`/api/docs/${docId}/content`, (b) => b.blocks.length === 2)
  assert.equal(blocks.blocks[1].spans[0].text, 'Second *paragraph*')
  // A comment anchored to "paragraph" of the first line, as docs/schemas.md shows.
  const text = doc.getText('content')
  const anchor = (index, assoc) =>
    Array.from(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(text, index, assoc)))
  doc.transact(() => {
    const c = new Y.Map()
    doc.getMap('comments').set('c-1', c)
    c.set('author', 'u-ada')
    c.set('body', 'Which one? <@u-bob>')
    c.set('at', Date.now())
    c.set('anchorStart', anchor(6, 0))
    c.set('anchorEnd', anchor(15, -1))
  })
  const comments = await readUntil(`/api/docs/${docId}/comments`, (b) => b.comments.length === 1)
  assert.deepEqual(
    [comments.comments[0].quote, comments.comments[0].mentions],
    ['paragraph', ['u-bob']]
  )

  // board: a column and a task, then a move.
  const boardId = await open('board')
  const board = await provider(boardId)
  const taskId = crypto.randomUUID()
  board.transact(() => {
    for (const [id, name] of [['todo', 'To do'], ['doing', 'Doing']]) {
      const column = new Y.Map()
      board.getArray('columns').push([column])
      column.set('id', id)
      column.set('name', name)
    }
    const task = new Y.Map()
    board.getMap('tasks').set(taskId, task)
    task.set('title', 'Write the launch post')
    task.set('description', new Y.Text('Draft, then review with Bob'))
    task.set('column', 'todo')
    task.set('priority', 'high')
    task.set('assignees', Y.Array.from(['u-ada']))
    task.set('due', '2026-12-24')
    task.set('order', 1)
  })
  board.transact(() => { board.getMap('tasks').get(taskId).set('column', 'doing') })
  const tasks = await readUntil(`/api/docs/${boardId}/tasks?column=doing`, (b) => b.tasks.length === 1)
  assert.deepEqual(
    [tasks.tasks[0].title, tasks.tasks[0].description, tasks.tasks[0].priority, tasks.tasks[0].assignees],
    ['Write the launch post', 'Draft, then review with Bob', 'high', ['u-ada']]
  )

  // channel: a message, a thread reply, a reaction.
  const channelId = await open('channel')
  const channel = await provider(channelId)
  const messages = channel.getMap('messages')
  const messageId = crypto.randomUUID()
  channel.transact(() => {
    const m = new Y.Map()
    messages.set(messageId, m)
    m.set('author', 'u-ada')
    m.set('body', new Y.Text('Launch on Friday? <@u-bob>'))
    m.set('at', Date.now())
    m.set('reactions', new Y.Map())
  })
  channel.transact(() => {
    const reply = new Y.Map()
    messages.set(crypto.randomUUID(), reply)
    reply.set('author', 'u-bob')
    reply.set('body', new Y.Text('Yes'))
    reply.set('at', Date.now() + 1)
    reply.set('parent', messageId)
    const reactions = messages.get(messageId).get('reactions')
    reactions.set('👍', new Y.Map())
    reactions.get('👍').set('u-bob', true)
  })
  const page = await readUntil(`/api/docs/${channelId}/messages`, (b) => b.messages[0]?.replies === 1 && b.messages[0].reactions.length === 1)
  assert.deepEqual(page.messages[0].mentions, ['u-bob'])
  assert.deepEqual(page.messages[0].reactions, [{ emoji: '👍', users: ['u-bob'] }])
  const thread = await readUntil(`/api/docs/${channelId}/messages/${messageId}/thread`, (b) => b.replies.length === 1)
  assert.equal(thread.replies[0].body, 'Yes')

  // whiteboard: a box and an arrow to it.
  const wbId = await open('whiteboard')
  const wb = await provider(wbId)
  wb.transact(() => {
    const shapes = wb.getMap('shapes')
    const box = new Y.Map()
    shapes.set('box-1', box)
    for (const [k, v] of Object.entries({ type: 'rectangle', x: 0, y: 0, width: 120, height: 60, z: 1 })) box.set(k, v)
    box.set('text', new Y.Text('Plan'))
    const arrow = new Y.Map()
    shapes.set('arrow-1', arrow)
    for (const [k, v] of Object.entries({ type: 'arrow', x: 120, y: 30, from: 'box-1', to: 'box-1', z: 0 })) arrow.set(k, v)
    arrow.set('points', Y.Array.from([0, 0, 80, 0]))
  })
  const shapes = await readUntil(`/api/docs/${wbId}/shapes`, (b) => b.shapes.length === 2)
  assert.deepEqual(shapes.shapes.map((s) => [s.id, s.kind]), [['arrow-1', 'arrow'], ['box-1', 'rectangle']])
  assert.deepEqual(shapes.shapes[0].points, [[0, 0], [80, 0]])
})

test('an automerge-repo client writes a task; REST reads it', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, open, readUntil, cleanups } = await setup(t)
  const boardId = await open('board', 'automerge')
  const opened = openRepo(server, { token: owner.token })
  cleanups.push(() => closeRepo(opened))
  await waitFor(() => serverPeerId(opened) !== undefined, WAIT_MS, 'handshake')
  const handle = opened.repo.import(Automerge.save(Automerge.from({ columns: [], tasks: {} })), { docId: boardId })
  handle.change((d) => {
    d.columns.push({ id: 'todo', name: 'To do' })
    d.tasks['t-1'] = { title: 'From automerge', column: 'todo', priority: 'urgent', assignees: ['u-ada'], order: 1 }
  })
  const tasks = await readUntil(`/api/docs/${boardId}/tasks`, (b) => b.tasks.length === 1)
  assert.deepEqual([tasks.tasks[0].title, tasks.tasks[0].priority, tasks.columns[0].name], ['From automerge', 'urgent', 'To do'])
})
