// Notifications from what real clients type: a mention written by an unmodified `y-websocket`
// provider, and one written by an `@automerge/automerge-repo` client, each becomes exactly one
// notification, delivered live over `/ws/events` to the member mentioned and to no one else;
// editing the message keeps it at one (docs/derivation.md). Every test has its own server and
// is bounded in time.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import * as Automerge from '@automerge/automerge'
import WebSocket from 'ws'
import * as Y from 'yjs'

import { connectProvider, startWeft, waitFor, waitSynced } from '../lib/weft.mjs'
import { closeRepo, openRepo, serverPeerId } from '../lib/automerge.mjs'
import { createDoc, ok, workspace } from '../lib/api.mjs'

const TEST_TIMEOUT_MS = 30_000
const WAIT_MS = 10_000
/** How long "nothing more arrives" is watched for. */
const QUIET_MS = 1_000

/** Opens `/ws/events` as `who`; collects every JSON event it receives. */
async function events (server, who, cleanups) {
  const socket = new WebSocket(`${server.url.replace(/^http/, 'ws')}/ws/events?token=${who.token}`)
  const received = []
  socket.on('message', (data) => received.push(JSON.parse(data.toString())))
  cleanups.push(() => socket.close())
  await waitFor(() => received.some((e) => e.type === 'ready'), WAIT_MS, 'the events socket is ready')
  return received
}

const notifications = (received) => received.filter((e) => e.type === 'notification').map((e) => e.notification)

async function setup (t, crdt) {
  const server = await startWeft()
  const cleanups = []
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
    await server.cleanup()
  })
  const { ws, owner, members } = await workspace(server, ['editor', 'viewer'])
  const channel = (await createDoc(server, owner.token, ws, { kind: 'channel', crdt, title: 'general' })).id
  const editorEvents = await events(server, members.editor, cleanups)
  const viewerEvents = await events(server, members.viewer, cleanups)
  /** The mention reaches the editor once, live; the viewer gets nothing; REST lists one. */
  const exactlyOne = async (messageId) => {
    await waitFor(() => notifications(editorEvents).length > 0, WAIT_MS, 'the editor is notified live')
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS))
    const live = notifications(editorEvents)
    assert.equal(live.length, 1, JSON.stringify(live))
    assert.equal(live[0].reason, 'mention')
    assert.equal(live[0].item, `message:${messageId}`)
    assert.equal(live[0].document, channel)
    assert.deepEqual(notifications(viewerEvents), [])
    const listed = await ok(server, 'GET', '/api/me/notifications', members.editor.token)
    assert.deepEqual(listed.notifications.map((n) => n.id), [live[0].id])
    assert.equal(listed.unread, 1)
    const viewer = await ok(server, 'GET', '/api/me/notifications', members.viewer.token)
    assert.deepEqual(viewer.notifications, [])
  }
  return { server, owner, members, channel, editorEvents, exactlyOne, cleanups }
}

test('a mention typed through y-websocket is one live notification, to its member only', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, members, channel, editorEvents, exactlyOne, cleanups } = await setup(t, 'yjs')
  const { provider, doc } = connectProvider(server, channel, { params: { token: owner.token } })
  cleanups.push(() => { provider.destroy(); doc.destroy() })
  await waitSynced(provider, WAIT_MS, 'synced')

  const messages = doc.getMap('messages')
  const message = new Y.Map()
  message.set('author', owner.id)
  message.set('body', `Can you review this, <@${members.editor.id}>?`)
  message.set('at', Date.now())
  messages.set('m1', message)
  await exactlyOne('m1')

  // An edit that keeps the mention notifies no one again.
  messages.get('m1').set('body', `Can you review this today, <@${members.editor.id}>?`)
  messages.get('m1').set('edited_at', Date.now())
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS))
  assert.equal(notifications(editorEvents).length, 1)
  await exactlyOne('m1')
})

test('a mention typed through automerge-repo is one live notification, to its member only', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { server, owner, members, channel, editorEvents, exactlyOne, cleanups } = await setup(t, 'automerge')
  const opened = openRepo(server, { token: owner.token })
  cleanups.push(() => closeRepo(opened))
  await waitFor(() => serverPeerId(opened) !== undefined, WAIT_MS, 'handshake')
  const body = `Can you review this, <@${members.editor.id}>?`
  const handle = opened.repo.import(Automerge.save(Automerge.from({
    channel: { topic: '' },
    messages: { m1: { author: owner.id, body, at: Date.now(), attachments: [], reactions: {} } }
  })), { docId: channel })
  await exactlyOne('m1')

  handle.change((d) => { d.messages.m1.body = `${body} Today, please.` })
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS))
  assert.equal(notifications(editorEvents).length, 1)
  await exactlyOne('m1')
})
