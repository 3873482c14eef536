// Records the fuzz seed corpora from real client traffic: runs `weft serve` and drives the real
// y-websocket, Hocuspocus (v4 and v3) and automerge-repo clients through ordinary editing
// sessions (text with formatting, maps, arrays, XML fragments as Tiptap writes them, awareness,
// offline edits and reconnects), capturing every frame a client sends. Writes:
//
//   fuzz/corpus/yjs_codec/*.bin          y-websocket frames, one per file
//   fuzz/corpus/hocuspocus_codec/*.bin   Hocuspocus frames
//   fuzz/corpus/automerge_codec/*.bin    automerge-repo messages (CBOR)
//   fuzz/recorded/yjs-updates.bin        the Yjs updates those frames carried, and
//   fuzz/recorded/automerge-sync.bin     the Automerge sync messages, each as u32 LE length +
//                                        bytes, which the relay fuzz targets replay and mutate
//
// Run: `cd compat && node golden/record-corpus.mjs` (needs target/debug/weft). Files are named by
// content hash, so re-recording only adds what is new.

import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

import WebSocket from 'ws'
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { decode as decodeCbor } from 'cbor-x'

import { connectProvider, repoDir, startWeft, waitFor, waitSynced } from '../lib/weft.mjs'
import { openProvider, openSocket } from '../lib/hocuspocus.mjs'
import { closeRepo, openRepo } from '../lib/automerge.mjs'

const WAIT_MS = 10_000
const fuzzDir = join(repoDir, 'fuzz')

/** Every frame a client sent, by endpoint. */
const sent = { yjs: [], hocuspocus: [], automerge: [] }

// Every client here sends through the `ws` package: record at its `send`.
const originalSend = WebSocket.prototype.send
WebSocket.prototype.send = function (data, ...rest) {
  const path = new URL(this.url).pathname
  const kind = path.startsWith('/ws/yjs') ? 'yjs' : path.startsWith('/ws/hocuspocus') ? 'hocuspocus' : 'automerge'
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
  sent[kind].push(new Uint8Array(bytes))
  return originalSend.call(this, data, ...rest)
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Ordinary edits of every shared type y-websocket and Hocuspocus apps use. */
function editYjs (doc, who) {
  const text = doc.getText('t')
  text.insert(text.length, `hello from ${who} `)
  text.format(0, 5, { bold: true })
  text.delete(0, 1)
  const map = doc.getMap('m')
  map.set(`${who}-n`, 42)
  const nested = new Y.Map()
  nested.set('title', `task of ${who}`)
  nested.set('done', false)
  map.set(`${who}-task`, nested)
  const array = doc.getArray('a')
  array.push([`${who}-1`, { x: 1, y: 2 }])
  array.insert(0, [true])
  const fragment = doc.getXmlFragment('prosemirror')
  const paragraph = new Y.XmlElement('paragraph')
  paragraph.insert(0, [new Y.XmlText(`a paragraph by ${who}`)])
  fragment.push([paragraph])
}

async function yWebsocketSession (server) {
  const a = connectProvider(server, 'corpus-y', { clientID: 11 })
  const b = connectProvider(server, 'corpus-y', { clientID: 12 })
  await waitSynced(a.provider, WAIT_MS)
  await waitSynced(b.provider, WAIT_MS)
  editYjs(a.doc, 'a')
  a.provider.awareness.setLocalStateField('cursor', { anchor: 1, head: 3 })
  a.provider.awareness.setLocalStateField('user', { name: 'ann', color: '#f00' })
  await waitFor(() => b.doc.getText('t').length > 0, WAIT_MS, 'b to see a')
  editYjs(b.doc, 'b')
  // Offline edits, then a reconnect: step 2 carries them, and an edit right after reconnecting.
  b.provider.disconnect()
  b.doc.getText('t').insert(0, 'offline ')
  b.provider.connect()
  b.doc.getText('t').insert(0, '!')
  await waitSynced(b.provider, WAIT_MS)
  await waitFor(() => a.doc.getText('t').toString() === b.doc.getText('t').toString(), WAIT_MS, 'convergence')
  a.provider.destroy()
  b.provider.destroy()
}

async function hocuspocusSession (server, version) {
  const opened = openSocket(server, version)
  const doc = new Y.Doc()
  doc.clientID = version === 'v4' ? 21 : 22
  const { provider } = openProvider(opened, `corpus-h-${version}`, { doc })
  await waitFor(() => provider.isSynced ?? provider.synced, WAIT_MS, `hocuspocus ${version} to sync`)
  editYjs(doc, version)
  provider.setAwarenessField('user', { name: version })
  provider.sendStateless(JSON.stringify({ hello: version }))
  await waitFor(() => (provider.unsyncedChanges ?? 0) === 0, WAIT_MS, 'changes to be acknowledged')
  await delay(100)
  provider.destroy()
  opened.socket.destroy()
}

async function automergeSession (server) {
  const one = openRepo(server, { peerId: 'corpus-one' })
  const two = openRepo(server, { peerId: 'corpus-two' })
  const handle = one.repo.create({ text: 'hello', list: [], map: {} })
  handle.change((d) => {
    d.list.push(1, 'two', { three: 3 })
    d.map.key = 'value'
  })
  // Repo one's first sync may still be on its way to Weft, which then answers doc-unavailable; the
  // handle turns ready when Weft passes the document on.
  const theirs = await two.repo.find(handle.url, { allowableStates: ['ready', 'unavailable'] })
  await waitFor(() => theirs.isReady(), WAIT_MS, 'repo two to get the document')
  theirs.change((d) => {
    d.text = 'hello from two'
    d.map.other = true
  })
  await waitFor(() => handle.doc()?.map?.other === true, WAIT_MS, 'repo one to see repo two')
  handle.broadcast({ cursor: 3 })
  await delay(200)
  await closeRepo(one)
  await closeRepo(two)
}

/** The Yjs updates inside y-websocket frames (sync step 2 and update messages). */
function yjsUpdates (frame) {
  const updates = []
  const dec = decoding.createDecoder(frame)
  try {
    while (decoding.hasContent(dec)) {
      const kind = decoding.readVarUint(dec)
      if (kind === 0) {
        const sub = decoding.readVarUint(dec)
        const payload = decoding.readVarUint8Array(dec)
        if (sub === 1 || sub === 2) updates.push(payload)
      } else if (kind === 1) {
        decoding.readVarUint8Array(dec)
      } else {
        break
      }
    }
  } catch {}
  return updates
}

function hocuspocusBody (frame) {
  const dec = decoding.createDecoder(frame)
  if (frame.length < 2) return null
  try {
    decoding.readVarString(dec)
    return frame.subarray(dec.pos)
  } catch {
    return null
  }
}

function lengthPrefixed (items) {
  const parts = []
  for (const item of items) {
    const len = Buffer.alloc(4)
    len.writeUInt32LE(item.length)
    parts.push(len, Buffer.from(item))
  }
  return Buffer.concat(parts)
}

async function writeCorpus (target, frames) {
  const dir = join(fuzzDir, 'corpus', target)
  await mkdir(dir, { recursive: true })
  const seen = new Set()
  for (const frame of frames) {
    const name = createHash('sha1').update(frame).digest('hex').slice(0, 16)
    if (seen.has(name)) continue
    seen.add(name)
    await writeFile(join(dir, `${name}.bin`), frame)
  }
  return seen.size
}

const server = await startWeft()
try {
  await yWebsocketSession(server)
  await hocuspocusSession(server, 'v4')
  await hocuspocusSession(server, 'v3')
  await automergeSession(server)
} finally {
  await server.stop()
  await server.cleanup()
}

const updates = [
  ...sent.yjs.flatMap(yjsUpdates),
  ...sent.hocuspocus.map(hocuspocusBody).filter(Boolean).flatMap(yjsUpdates)
].filter((u) => !(u.length === 2 && u[0] === 0 && u[1] === 0))
const syncs = sent.automerge.flatMap((frame) => {
  try {
    const message = decodeCbor(frame)
    return message.type === 'sync' || message.type === 'request' ? [new Uint8Array(message.data)] : []
  } catch {
    return []
  }
})
await mkdir(join(fuzzDir, 'recorded'), { recursive: true })
await writeFile(join(fuzzDir, 'recorded', 'yjs-updates.bin'), lengthPrefixed(updates))
await writeFile(join(fuzzDir, 'recorded', 'automerge-sync.bin'), lengthPrefixed(syncs))
const counts = {
  yjs_codec: await writeCorpus('yjs_codec', sent.yjs),
  hocuspocus_codec: await writeCorpus('hocuspocus_codec', sent.hocuspocus),
  automerge_codec: await writeCorpus('automerge_codec', sent.automerge),
  yjs_updates: updates.length,
  automerge_sync_messages: syncs.length
}
console.log(JSON.stringify(counts))
