// Captures golden y-protocols frames from the real npm packages (yjs, y-protocols, lib0) and writes
// them to sync-core/tests/golden/yjs.json, where sync-core/tests/golden.rs replays them against the
// Rust codec and yrs.
//
// Owns: building deterministic frames (fixed client ids, no clock or randomness in any encoded byte)
// and a self-check that every frame reads back with lib0's own decoder. Does not own any assertion
// about Weft: that is the Rust test's job.
//
// Run with `npm run golden` from compat/. Two runs produce identical output.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { dirname, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'

import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

const compatDir = fileURLToPath(new URL('..', import.meta.url))
const repoDir = fileURLToPath(new URL('../..', import.meta.url))
const outFile = fileURLToPath(new URL('../../sync-core/tests/golden/yjs.json', import.meta.url))

// y-protocols top-level message types (the numbers y-websocket uses).
const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const MESSAGE_AUTH = 2
const MESSAGE_QUERY_AWARENESS = 3

/** @param {string} name */
const installedVersion = (name) =>
  JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')).version

/** @param {Uint8Array} bytes */
const hex = (bytes) => Buffer.from(bytes).toString('hex')

/** A fresh doc whose encoded structs carry `clientID`, so output never depends on randomness. */
const newDoc = (clientID) => {
  const doc = new Y.Doc()
  doc.clientID = clientID
  return doc
}

/** Runs `edit` and returns the single update the doc emits for it (what a provider would send). */
const captureUpdate = (doc, edit) => {
  /** @type {Uint8Array[]} */
  const updates = []
  const onUpdate = (update) => updates.push(update)
  doc.on('update', onUpdate)
  doc.transact(() => edit(doc))
  doc.off('update', onUpdate)
  assert.equal(updates.length, 1, 'one transaction emits one update')
  return updates[0]
}

// ---- messages: each is written with the real y-protocols writers; `payload` is computed separately
// with yjs so the self-check below compares two independent paths.

const syncStep1 = (doc) => ({
  type: 'sync_step1',
  payload: Y.encodeStateVector(doc),
  write: (enc) => {
    encoding.writeVarUint(enc, MESSAGE_SYNC)
    syncProtocol.writeSyncStep1(enc, doc)
  }
})

const syncStep2 = (doc, encodedStateVector) => ({
  type: 'sync_step2',
  payload: Y.encodeStateAsUpdate(doc, encodedStateVector),
  write: (enc) => {
    encoding.writeVarUint(enc, MESSAGE_SYNC)
    syncProtocol.writeSyncStep2(enc, doc, encodedStateVector)
  }
})

const syncUpdate = (update) => ({
  type: 'sync_update',
  payload: update,
  write: (enc) => {
    encoding.writeVarUint(enc, MESSAGE_SYNC)
    syncProtocol.writeUpdate(enc, update)
  }
})

const awarenessMessage = (awareness, clients) => {
  const payload = awarenessProtocol.encodeAwarenessUpdate(awareness, clients)
  return {
    type: 'awareness',
    payload,
    write: (enc) => {
      encoding.writeVarUint(enc, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(enc, payload)
    }
  }
}

const permissionDenied = (reason) => ({
  type: 'permission_denied',
  reason,
  write: (enc) => {
    encoding.writeVarUint(enc, MESSAGE_AUTH)
    authProtocol.writePermissionDenied(enc, reason)
  }
})

const queryAwareness = () => ({
  type: 'query_awareness',
  write: (enc) => encoding.writeVarUint(enc, MESSAGE_QUERY_AWARENESS)
})

/** Reads `frame` back with lib0's decoder and checks it holds exactly `messages`. */
const selfCheck = (name, frame, messages) => {
  const dec = decoding.createDecoder(frame)
  for (const m of messages) {
    const kind = decoding.readVarUint(dec)
    switch (m.type) {
      case 'sync_step1':
      case 'sync_step2':
      case 'sync_update': {
        assert.equal(kind, MESSAGE_SYNC, name)
        const sub = decoding.readVarUint(dec)
        assert.equal(sub, { sync_step1: 0, sync_step2: 1, sync_update: 2 }[m.type], name)
        assert.deepEqual(decoding.readVarUint8Array(dec), m.payload, name)
        break
      }
      case 'awareness':
        assert.equal(kind, MESSAGE_AWARENESS, name)
        assert.deepEqual(decoding.readVarUint8Array(dec), m.payload, name)
        break
      case 'permission_denied':
        assert.equal(kind, MESSAGE_AUTH, name)
        assert.equal(decoding.readVarUint(dec), authProtocol.messagePermissionDenied, name)
        assert.equal(decoding.readVarString(dec), m.reason, name)
        break
      case 'query_awareness':
        assert.equal(kind, MESSAGE_QUERY_AWARENESS, name)
        break
      default:
        throw new Error(`unknown message type ${m.type}`)
    }
  }
  assert.equal(decoding.hasContent(dec), false, `${name}: trailing bytes`)
}

/** Replays every document payload of a case into a fresh doc, the way the Rust test will. */
const replay = (messages) => {
  const doc = newDoc(999)
  for (const m of messages) {
    if (m.type === 'sync_step2' || m.type === 'sync_update') Y.applyUpdate(doc, m.payload)
  }
  return doc
}

/** JSON value with object keys sorted, so the file's text does not depend on insertion order. */
const sortKeys = (value) => {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]))
  }
  return value
}

/** Decoded entries of an awareness payload, read independently of y-protocols' writer. */
const awarenessEntries = (payload) => {
  const dec = decoding.createDecoder(payload)
  const n = decoding.readVarUint(dec)
  const entries = []
  for (let i = 0; i < n; i++) {
    entries.push({
      client_id: decoding.readVarUint(dec),
      clock: decoding.readVarUint(dec),
      state: decoding.readVarString(dec)
    })
  }
  assert.equal(decoding.hasContent(dec), false)
  return entries
}

/**
 * Turns a case description into its JSON form.
 * @param {{name: string, description: string, messages: any[], texts?: string[], maps?: string[],
 *          expectAwareness?: any[], expectStateVector?: Record<string, number>}} c
 */
const buildCase = (c) => {
  const enc = encoding.createEncoder()
  for (const m of c.messages) m.write(enc)
  const frame = encoding.toUint8Array(enc)
  selfCheck(c.name, frame, c.messages)

  const out = {
    name: c.name,
    description: c.description,
    frame_hex: hex(frame),
    messages: c.messages.map((m) => {
      const o = { type: m.type }
      if (m.payload !== undefined) o.payload_hex = hex(m.payload)
      if (m.reason !== undefined) o.reason = m.reason
      return o
    })
  }
  if (c.texts || c.maps) {
    const doc = replay(c.messages)
    if (c.texts) out.expect_text = Object.fromEntries(c.texts.map((t) => [t, doc.getText(t).toString()]))
    if (c.maps) out.expect_map = Object.fromEntries(c.maps.map((m) => [m, sortKeys(doc.getMap(m).toJSON())]))
  }
  if (c.expectStateVector) out.expect_state_vector = c.expectStateVector
  const awarenessPayloads = c.messages.filter((m) => m.type === 'awareness')
  if (awarenessPayloads.length > 0) {
    out.awareness = awarenessPayloads.flatMap((m) => awarenessEntries(m.payload))
    if (c.expectAwareness) assert.deepEqual(out.awareness, c.expectAwareness, c.name)
  }
  return out
}

/** Awareness for `doc` without the liveness timer, so this script exits on its own. */
const newAwareness = (doc) => {
  const awareness = new awarenessProtocol.Awareness(doc)
  clearInterval(awareness._checkInterval)
  return awareness
}

// ---- the cases ----

const cases = []

{
  const doc = newDoc(1)
  cases.push({
    name: 'sync_step1_empty_doc',
    description: 'Sync step 1 from a doc that has never been edited: an empty state vector.',
    messages: [syncStep1(doc)],
    expectStateVector: {}
  })
}

{
  const doc = newDoc(1)
  doc.getText('t').insert(0, 'hello world')
  const other = newDoc(2)
  other.getText('t').insert(0, 'abc')
  Y.applyUpdate(doc, Y.encodeStateAsUpdate(other))
  cases.push({
    name: 'sync_step1_doc_with_content',
    description: 'Sync step 1 from a doc holding edits of two clients (1: 11 chars, 2: 3 chars).',
    messages: [syncStep1(doc)],
    expectStateVector: { 1: 11, 2: 3 }
  })
}

{
  const doc = newDoc(1)
  doc.getText('t').insert(0, 'hello world')
  const emptyPeer = newDoc(2)
  cases.push({
    name: 'sync_step2_hello_world',
    description: 'Sync step 2 answering an empty state vector, for a doc whose root text "t" is "hello world".',
    messages: [syncStep2(doc, Y.encodeStateVector(emptyPeer))],
    texts: ['t']
  })
}

{
  const doc = newDoc(1)
  const text = doc.getText('t')
  text.insert(0, 'hello brave new world')
  text.delete(5, 10)
  text.insert(5, ',')
  const emptyPeer = newDoc(2)
  cases.push({
    name: 'sync_step2_after_deletions',
    description: 'Sync step 2 for a garbage-collected doc: deleted runs are GC structs plus a delete set.',
    messages: [syncStep2(doc, Y.encodeStateVector(emptyPeer))],
    texts: ['t']
  })
}

{
  const doc = newDoc(2)
  const update = captureUpdate(doc, (d) => d.getText('t').insert(0, 'hello'))
  cases.push({
    name: 'sync_update_insert',
    description: "An incremental update from doc.on('update') after inserting into an empty root text.",
    messages: [syncUpdate(update)],
    texts: ['t']
  })
}

{
  const doc = newDoc(2)
  const first = captureUpdate(doc, (d) => d.getText('t').insert(0, 'held'))
  const second = captureUpdate(doc, (d) => d.getText('t').insert(3, 'lo wor'))
  cases.push({
    name: 'sync_update_insert_in_middle',
    description: 'Two updates in one frame; the second inserts inside the first, splitting its item.',
    messages: [syncUpdate(first), syncUpdate(second)],
    texts: ['t']
  })
}

{
  const doc = newDoc(3)
  const text = doc.getText('t')
  const base = captureUpdate(doc, () => text.insert(0, 'hello world'))
  const deletion = captureUpdate(doc, () => text.delete(5, 6))
  cases.push({
    name: 'sync_update_deletion',
    description: 'An insert, then an update holding only a delete set (removes " world").',
    messages: [syncUpdate(base), syncUpdate(deletion)],
    texts: ['t']
  })
}

{
  const doc = newDoc(3)
  const text = doc.getText('t')
  const update = captureUpdate(doc, () => {
    text.insert(0, 'draft: hello')
    text.delete(0, 7)
  })
  cases.push({
    name: 'sync_update_insert_and_delete_one_transaction',
    description: 'One update carrying both new structs and a delete set over them.',
    messages: [syncUpdate(update)],
    texts: ['t']
  })
}

{
  const doc = newDoc(1)
  const map = doc.getMap('m')
  const update = captureUpdate(doc, () => {
    map.set('int', 42)
    map.set('negative', -7)
    map.set('big', 2 ** 40)
    map.set('float', 3.25)
    map.set('precise', 0.1)
    map.set('string', 'weft')
    map.set('empty', '')
    map.set('yes', true)
    map.set('no', false)
    map.set('nothing', null)
    map.set('object', { title: 'plan', tags: ['a', 'b'], nested: { depth: 2, ok: true } })
    map.set('array', [1, 'two', false, null, { three: 3 }, [4]])
    const inner = new Y.Map()
    map.set('ymap', inner)
    inner.set('k', 'v')
    const list = new Y.Array()
    map.set('yarray', list)
    list.push([1, 2, 3])
  })
  cases.push({
    name: 'sync_update_map_nested_values',
    description: 'An update on root Y.Map "m": numbers, strings, booleans, null, JSON object/array, nested Y.Map/Y.Array.',
    messages: [syncUpdate(update)],
    maps: ['m']
  })
}

{
  const doc = newDoc(1)
  const map = doc.getMap('m')
  const first = captureUpdate(doc, () => {
    map.set('status', 'todo')
    map.set('count', 1)
  })
  const second = captureUpdate(doc, () => {
    map.set('status', 'done')
    map.delete('count')
  })
  cases.push({
    name: 'sync_update_map_overwrite_and_delete',
    description: 'A map key overwritten and another deleted in a later update.',
    messages: [syncUpdate(first), syncUpdate(second)],
    maps: ['m']
  })
}

{
  const doc = newDoc(2)
  const update = captureUpdate(doc, (d) => d.getText('t').insert(0, 'héllo 👋🏽 世界 — ✓ 𝄞'))
  cases.push({
    name: 'sync_update_unicode',
    description: 'An insert with two-, three- and four-byte UTF-8 (emoji with modifier, CJK, astral symbol).',
    messages: [syncUpdate(update)],
    texts: ['t']
  })
}

{
  const doc = newDoc(2)
  const text = doc.getText('t')
  const first = captureUpdate(doc, () => text.insert(0, '😀世界'))
  // Yjs indexes by UTF-16 code unit: the emoji is 2 units, so index 2 is between it and "世".
  const second = captureUpdate(doc, () => text.insert(2, '中'))
  const third = captureUpdate(doc, () => text.delete(4, 1))
  cases.push({
    name: 'sync_update_unicode_split',
    description: 'Inserts and deletes at UTF-16 offsets inside a multi-byte string; items split between code points.',
    messages: [syncUpdate(first), syncUpdate(second), syncUpdate(third)],
    texts: ['t']
  })
}

{
  const doc = newDoc(1)
  const awareness = newAwareness(doc)
  awareness.setLocalState({ user: { name: 'ann', color: '#30bced' }, cursor: null })
  awareness.setLocalStateField('user', { name: 'Zoë 👩‍💻', color: '#6eeb83' })
  cases.push({
    name: 'awareness_user_state',
    description: 'An awareness update with one client (id 1, clock 2) and a user object state.',
    messages: [awarenessMessage(awareness, [1])],
    expectAwareness: [
      { client_id: 1, clock: 2, state: '{"user":{"name":"Zoë 👩‍💻","color":"#6eeb83"},"cursor":null}' }
    ]
  })
}

{
  const docA = newDoc(1)
  const a = newAwareness(docA)
  a.setLocalStateField('user', { name: 'ann' })
  const docB = newDoc(300)
  const b = newAwareness(docB)
  b.setLocalStateField('user', { name: 'bob' })
  awarenessProtocol.applyAwarenessUpdate(a, awarenessProtocol.encodeAwarenessUpdate(b, [300]), 'test')
  cases.push({
    name: 'awareness_two_clients',
    description: 'One awareness update with two entries; client 300 needs a two-byte varUint.',
    messages: [awarenessMessage(a, [1, 300])]
  })
}

{
  const doc = newDoc(1)
  const awareness = newAwareness(doc)
  awareness.setLocalStateField('user', { name: 'ann' })
  awarenessProtocol.removeAwarenessStates(awareness, [1], 'test')
  cases.push({
    name: 'awareness_remove_client',
    description: 'removeAwarenessStates of the local client: state null with a bumped clock.',
    messages: [awarenessMessage(awareness, [1])],
    expectAwareness: [{ client_id: 1, clock: 2, state: 'null' }]
  })
}

cases.push({
  name: 'permission_denied',
  description: 'Auth: permission denied with a (non-ASCII) reason.',
  messages: [permissionDenied('read-only share — écriture refusée')]
})

cases.push({
  name: 'query_awareness',
  description: 'Query awareness: the type byte alone.',
  messages: [queryAwareness()]
})

{
  const doc = newDoc(1)
  doc.getText('t').insert(0, 'hi')
  const awareness = newAwareness(doc)
  awareness.setLocalStateField('user', { name: 'ann' })
  cases.push({
    name: 'sync_step1_and_awareness_one_frame',
    description: 'Sync step 1 and an awareness update concatenated in one frame.',
    messages: [syncStep1(doc), awarenessMessage(awareness, [1])],
    expectStateVector: { 1: 2 }
  })
}

{
  const doc = newDoc(2)
  const update = captureUpdate(doc, (d) => d.getText('t').insert(0, 'step2 then update '))
  const remote = newDoc(3)
  remote.getText('t').insert(0, 'remote ')
  cases.push({
    name: 'sync_step2_then_update_then_query_awareness',
    description: 'Three messages of three kinds in one frame.',
    messages: [syncStep2(remote, Y.encodeStateVector(newDoc(9))), syncUpdate(update), queryAwareness()],
    texts: ['t']
  })
}

{
  const doc = newDoc(1)
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789 '
  let big = ''
  for (let i = 0; big.length < 100_000; i++) big += alphabet[i % alphabet.length]
  big = big.slice(0, 100_000)
  const update = captureUpdate(doc, (d) => d.getText('t').insert(0, big))
  assert.ok(update.length > 2 ** 14, 'payload length needs a three-byte varUint')
  cases.push({
    name: 'sync_update_large_insert',
    description: 'A 100,000-character insert: payload and string lengths take multi-byte varUints.',
    messages: [syncUpdate(update)],
    texts: ['t']
  })
}

const golden = {
  generated_by: relative(repoDir, fileURLToPath(import.meta.url)),
  packages: {
    yjs: installedVersion('yjs'),
    'y-protocols': installedVersion('y-protocols'),
    lib0: installedVersion('lib0')
  },
  cases: cases.map(buildCase)
}

mkdirSync(dirname(outFile), { recursive: true })
writeFileSync(outFile, JSON.stringify(golden, null, 2) + '\n')
console.log(`wrote ${golden.cases.length} cases to ${relative(compatDir, outFile)}`)
