// Helpers for driving a real `weft` binary with the real Hocuspocus providers (v4 as
// `@hocuspocus/provider`, v3 as the alias `hocuspocus-provider-v3`).
//
// Owns: opening a shared `HocuspocusProviderWebsocket` wired for Node (the `ws` package, every
// received frame recorded, short reconnect delays), attaching providers to it, decoding the
// Hocuspocus frames a socket received, and signing HS256 tokens with node:crypto. Does not own any
// assertion about Weft's behaviour: that lives in test/hocuspocus.test.mjs.

import { createHmac } from 'node:crypto'

import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import * as v4 from '@hocuspocus/provider'
import * as v3 from 'hocuspocus-provider-v3'

import { recordingWebSocket } from './weft.mjs'

/** The provider packages by major version. */
export const providers = { v4, v3 }

/** The Hocuspocus endpoint of `server`. */
export function hocuspocusUrl (server) {
  return `ws://127.0.0.1:${server.port}/ws/hocuspocus`
}

/**
 * One `HocuspocusProviderWebsocket` (one socket, many documents) of provider major `version`.
 * `received` records every frame the server sent on it.
 * @param {import('./weft.mjs').WeftServer} server
 * @param {'v4' | 'v3'} version
 */
export function openSocket (server, version) {
  /** @type {Uint8Array[]} */
  const received = []
  const socket = new providers[version].HocuspocusProviderWebsocket({
    url: hocuspocusUrl(server),
    WebSocketPolyfill: recordingWebSocket(received),
    // Reconnect quickly after a server restart; no jitter so tests stay predictable.
    delay: 50,
    minDelay: 50,
    maxDelay: 250,
    factor: 1.5,
    jitter: false
  })
  return { socket, received, version }
}

/**
 * A provider for document `name` on `socket` (from `openSocket`), attached and so syncing.
 * @param {{ socket: any, version: 'v4' | 'v3' }} opened
 * @param {string} name
 * @param {{ doc?: Y.Doc, clientID?: number, token?: string | null, sessionAwareness?: boolean,
 *           awareness?: null }} [opts]
 */
export function openProvider (opened, name, opts = {}) {
  const doc = opts.doc ?? new Y.Doc()
  if (opts.clientID !== undefined) doc.clientID = opts.clientID
  /** @type {string[]} */
  const denied = []
  /** @type {string[]} */
  const stateless = []
  /** @type {string[]} */
  const closed = []
  const config = {
    name,
    document: doc,
    websocketProvider: opened.socket,
    token: opts.token ?? null,
    onAuthenticationFailed: ({ reason }) => denied.push(reason),
    onStateless: ({ payload }) => stateless.push(payload),
    onClose: ({ event }) => closed.push(event?.reason ?? '')
  }
  if (opts.awareness !== undefined) config.awareness = opts.awareness
  if (opts.sessionAwareness) config.sessionAwareness = true
  const provider = new providers[opened.version].HocuspocusProvider(config)
  provider.attach()
  return { doc, provider, denied, stateless, closed }
}

/**
 * Decodes one Hocuspocus frame a provider received.
 * @param {Uint8Array} frame
 * @returns {{ type: string, key?: string, applied?: boolean, scope?: string, reason?: string,
 *             payload?: Uint8Array | string, sub?: number }}
 */
export function decodeHocuspocusFrame (frame) {
  if (frame.length === 1 && frame[0] === 9) return { type: 'ping' }
  if (frame.length === 1 && frame[0] === 10) return { type: 'pong' }
  const dec = decoding.createDecoder(frame)
  const key = decoding.readVarString(dec)
  const kind = decoding.readVarUint(dec)
  switch (kind) {
    case 0: {
      const sub = decoding.readVarUint(dec)
      return { type: ['sync_step1', 'sync_step2', 'sync_update'][sub] ?? `sync_${sub}`, key, payload: decoding.readVarUint8Array(dec) }
    }
    case 1:
      return { type: 'awareness', key, payload: decoding.readVarUint8Array(dec) }
    case 2: {
      const sub = decoding.readVarUint(dec)
      if (sub === 1) return { type: 'permission_denied', key, reason: decoding.readVarString(dec) }
      if (sub === 2) return { type: 'authenticated', key, scope: decoding.readVarString(dec) }
      return { type: 'auth', key, sub }
    }
    case 3:
      return { type: 'query_awareness', key }
    case 5:
      return { type: 'stateless', key, payload: decoding.readVarString(dec) }
    case 7:
      return { type: 'close', key, reason: decoding.hasContent(dec) ? decoding.readVarString(dec) : undefined }
    case 8:
      return { type: 'sync_status', key, applied: decoding.readVarInt(dec) === 1 }
    default:
      return { type: `unknown_${kind}`, key }
  }
}

/** Every decoded frame of `received` for routing key `key` (all frames when `key` is undefined). */
export function framesFor (received, key) {
  return received.map(decodeHocuspocusFrame).filter((f) => key === undefined || f.key === key)
}

/** A short picture of recorded frames for failure messages. */
export function describeHocuspocusFrames (received) {
  return received
    .map((f) => {
      try {
        const m = decodeHocuspocusFrame(f)
        const detail = m.applied ?? m.scope ?? m.reason ?? (typeof m.payload === 'string' ? m.payload : m.payload?.length) ?? ''
        return `${JSON.stringify(m.key ?? '')}:${m.type}(${detail})`
      } catch (err) {
        return `undecodable ${Buffer.from(f).toString('hex').slice(0, 40)}: ${err.message}`
      }
    })
    .join(', ')
}

/**
 * An HS256 JWT over `claims`, signed with `secret` — what an application server would issue.
 * @param {string} secret
 * @param {Record<string, unknown>} claims
 */
export function signToken (secret, claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`
  const signature = createHmac('sha256', secret).update(body).digest('base64url')
  return `${body}.${signature}`
}
