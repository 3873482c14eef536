// Test harness for driving a real `weft` binary with the real Yjs JavaScript clients.
//
// Owns: starting `weft serve` on a temp data dir, reading its "listening on" line, stopping
// (SIGTERM), killing (SIGKILL) and restarting it on the same port and data dir; creating
// y-websocket providers wired for Node; a bounded `waitFor`; decoding the y-protocols frames a
// provider receives so tests can see echoes. Does not own any assertion about Weft's behaviour:
// that lives in test/*.test.mjs.

import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import * as decoding from 'lib0/decoding'

/** Root of the Cargo workspace. */
export const repoDir = fileURLToPath(new URL('../..', import.meta.url))

/** The binary under test: `WEFT_BIN`, else the debug build `cargo build -p weft-server` produces. */
export const weftBin = process.env.WEFT_BIN ?? join(repoDir, 'target', 'debug', 'weft')

const LISTENING = /^listening on http:\/\/(127\.0\.0\.1):(\d+)\s*$/
const START_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 10_000
const STDERR_KEEP_BYTES = 64 * 1024

/** Every live child, so a crashing test run never leaves a weft process behind. */
const liveChildren = new Set()
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL')
})

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `predicate` every 10 ms until it returns something truthy, and returns that.
 * Fails after `timeoutMs` with `label` (a string, or a function called then for a current picture).
 * @template T
 * @param {() => T | Promise<T>} predicate
 * @param {number} timeoutMs
 * @param {string | (() => string)} label
 * @returns {Promise<T>}
 */
export async function waitFor (predicate, timeoutMs, label) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() >= deadline) {
      const what = typeof label === 'function' ? label() : label
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    }
    await delay(10)
  }
}

/** A running (or stopped) weft process with its own temp data dir. */
export class WeftServer {
  /** @param {{ dataDir: string, ownsDataDir: boolean, env?: Record<string, string> }} opts */
  constructor ({ dataDir, ownsDataDir, env }) {
    this.dataDir = dataDir
    this.ownsDataDir = ownsDataDir
    this.env = env ?? {}
    /** @type {number} */
    this.port = 0
    /** @type {import('node:child_process').ChildProcess | null} */
    this.child = null
    this.exited = null
    this.stderr = ''
    this.stdout = ''
  }

  /** `http://127.0.0.1:PORT` */
  get url () {
    return `http://127.0.0.1:${this.port}`
  }

  /** The y-websocket server URL; the provider appends `/{room}`. */
  get yjsUrl () {
    return `ws://127.0.0.1:${this.port}/ws/yjs`
  }

  get running () {
    return this.child !== null
  }

  /** Starts the process on `this.port` (0 picks one) and waits for its listening line. */
  async start () {
    if (this.child) throw new Error('weft is already running')
    const deadline = Date.now() + START_TIMEOUT_MS
    // Restarting on a fixed port can race the old socket's release; retry while the bind fails.
    for (;;) {
      try {
        await this.#spawnOnce(deadline)
        return this
      } catch (err) {
        const addrInUse = /address already in use|EADDRINUSE|os error 98/i.test(this.stderr)
        if (!(err instanceof ExitedEarly) || !addrInUse || this.port === 0 || Date.now() >= deadline) throw err
        await delay(50)
      }
    }
  }

  async #spawnOnce (deadline) {
    this.stderr = ''
    this.stdout = ''
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir]
    const child = spawn(weftBin, args, {
      cwd: this.dataDir,
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child)
        resolve({ code, signal })
      })
    })
    const spawnFailed = new Promise((resolve) => child.once('error', resolve))
    liveChildren.add(child)

    // Both pipes are drained for the process's whole life: a full pipe would block the server.
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-STDERR_KEEP_BYTES)
      if (process.env.WEFT_TEST_LOG) process.stderr.write(chunk)
    })
    const lines = createInterface({ input: child.stdout })
    const listening = new Promise((resolve) => {
      lines.on('line', (line) => {
        this.stdout = (this.stdout + line + '\n').slice(-STDERR_KEEP_BYTES)
        const m = LISTENING.exec(line)
        if (m) resolve(Number(m[2]))
      })
    })

    let timer
    const timeout = new Promise((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), 'timeout') })
    const outcome = await Promise.race([
      listening.then((port) => ({ port })),
      exited.then((status) => ({ status })),
      spawnFailed.then((error) => ({ error })),
      timeout.then(() => ({ timedOut: true }))
    ])
    clearTimeout(timer)

    if (outcome.port !== undefined) {
      if (this.port !== 0 && outcome.port !== this.port) {
        child.kill('SIGKILL')
        throw new Error(`weft was asked for port ${this.port} but reports ${outcome.port}`)
      }
      this.port = outcome.port
      this.child = child
      this.exited = exited
      return
    }
    if (outcome.error) {
      liveChildren.delete(child)
      throw new Error(
        `cannot run weft at ${weftBin}: ${outcome.error.message}. ` +
        'Build it with `cargo build -p weft-server` or point WEFT_BIN at a binary.'
      )
    }
    if (outcome.status) {
      const { code, signal } = outcome.status
      throw new ExitedEarly(
        `weft exited (code ${code}, signal ${signal}) before printing its listening line.\n` +
        `command: ${weftBin} ${args.join(' ')}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`
      )
    }
    child.kill('SIGKILL')
    await exited
    throw new Error(
      `weft did not print "listening on http://127.0.0.1:PORT" within ${START_TIMEOUT_MS} ms.\n` +
      `command: ${weftBin} ${args.join(' ')}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`
    )
  }

  /** SIGTERM, then waits for the exit (SIGKILL and an error if it takes longer than 10 s). */
  async stop () {
    const status = await this.#signal('SIGTERM')
    return status
  }

  /** SIGKILL, then waits for the exit: the `kill -9` crash. */
  async kill () {
    return this.#signal('SIGKILL')
  }

  async #signal (signal) {
    const child = this.child
    if (!child) throw new Error('weft is not running')
    child.kill(signal)
    let timer
    const timeout = new Promise((resolve) => { timer = setTimeout(resolve, STOP_TIMEOUT_MS, null) })
    const status = await Promise.race([this.exited, timeout])
    clearTimeout(timer)
    this.child = null
    if (status === null) {
      child.kill('SIGKILL')
      await this.exited
      throw new Error(`weft did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}.\nstderr:\n${this.stderr}`)
    }
    return status
  }

  /** Stops the process if it runs, then starts it again on the same port and data dir. */
  async restart () {
    if (this.child) await this.stop()
    return this.start()
  }

  /** Kills the process if it still runs and removes the temp data dir this harness made. */
  async cleanup () {
    if (this.child) await this.kill()
    if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true })
  }
}

class ExitedEarly extends Error {}

/**
 * Starts weft on `127.0.0.1:0` with a fresh temp data dir.
 * @param {{ env?: Record<string, string> }} [opts]
 */
export async function startWeft (opts = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'weft-compat-'))
  const server = new WeftServer({ dataDir, ownsDataDir: true, env: opts.env })
  try {
    return await server.start()
  } catch (err) {
    await server.cleanup()
    throw err
  }
}

/**
 * A `ws` WebSocket class that records every frame it receives into `frames` (as Uint8Array).
 * Passed as `WebSocketPolyfill`, it lets a test see exactly what the server sent a provider.
 * @param {Uint8Array[]} frames
 */
export function recordingWebSocket (frames) {
  return class RecordingWebSocket extends WebSocket {
    constructor (url, protocols) {
      super(url, protocols)
      this.on('message', (data, isBinary) => {
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(isBinary ? data : String(data))
        frames.push(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      })
    }
  }
}

/**
 * A y-websocket provider for `room` wired for Node: `ws` as the WebSocket, no BroadcastChannel (two
 * providers in one process would otherwise sync through it and bypass the server), and a short
 * reconnect backoff so restarts are noticed quickly. `received` records every frame from the server.
 * @param {WeftServer} server
 * @param {string} room
 * `params` become query parameters of the connection URL (`{ token }` for a workspace document).
 * @param {{ doc?: Y.Doc, clientID?: number, connect?: boolean, params?: Record<string, string> }} [opts]
 */
export function connectProvider (server, room, opts = {}) {
  const doc = opts.doc ?? new Y.Doc()
  if (opts.clientID !== undefined) doc.clientID = opts.clientID
  /** @type {Uint8Array[]} */
  const received = []
  const provider = new WebsocketProvider(server.yjsUrl, room, doc, {
    WebSocketPolyfill: recordingWebSocket(received),
    disableBc: true,
    maxBackoffTime: 250,
    connect: opts.connect ?? true,
    params: opts.params ?? {}
  })
  return { doc, provider, received }
}

/** A provider's `synced` flag, waited for. */
export function waitSynced (provider, timeoutMs = 10_000, label = 'provider to sync') {
  return waitFor(() => provider.synced, timeoutMs, label)
}

/**
 * Decodes every y-protocols message in a frame (several may share one).
 * @param {Uint8Array} frame
 * @returns {{ type: string, payload?: Uint8Array, reason?: string }[]}
 */
export function decodeFrame (frame) {
  const dec = decoding.createDecoder(frame)
  const messages = []
  while (decoding.hasContent(dec)) {
    const kind = decoding.readVarUint(dec)
    switch (kind) {
      case 0: {
        const sub = decoding.readVarUint(dec)
        const type = ['sync_step1', 'sync_step2', 'sync_update'][sub]
        if (!type) throw new Error(`unknown sync sub-type ${sub}`)
        messages.push({ type, payload: decoding.readVarUint8Array(dec) })
        break
      }
      case 1:
        messages.push({ type: 'awareness', payload: decoding.readVarUint8Array(dec) })
        break
      case 2: {
        const sub = decoding.readVarUint(dec)
        if (sub !== 0) throw new Error(`unknown auth sub-type ${sub}`)
        messages.push({ type: 'permission_denied', reason: decoding.readVarString(dec) })
        break
      }
      case 3:
        messages.push({ type: 'query_awareness' })
        break
      default:
        throw new Error(`unknown message type ${kind}`)
    }
  }
  return messages
}

/**
 * Whether the document updates (sync step 2 or update) in `frames` carry every struct `doc`'s own
 * client has created, up to its current clock: i.e. the server has sent the client's changes back to
 * it. (Deletions create no structs; an edit that deletes also inserts nothing to look for.)
 * @param {Uint8Array[]} frames
 * @param {Y.Doc} doc
 */
export function echoCoversLocalEdits (frames, doc) {
  const want = Y.getState(doc.store, doc.clientID)
  if (want === 0) return true
  // Clock ranges of this client seen in echoes, merged as they arrive.
  const ranges = []
  for (const frame of frames) {
    for (const m of decodeFrame(frame)) {
      if (m.type !== 'sync_update' && m.type !== 'sync_step2') continue
      for (const s of Y.decodeUpdate(m.payload).structs) {
        if (s.id.client === doc.clientID) ranges.push([s.id.clock, s.id.clock + s.length])
      }
    }
  }
  ranges.sort((x, y) => x[0] - y[0])
  let covered = 0
  for (const [start, end] of ranges) {
    if (start > covered) break
    covered = Math.max(covered, end)
  }
  return covered >= want
}

/** A short picture of recorded frames for failure messages. */
export function describeFrames (frames) {
  return frames
    .map((f) => {
      try {
        return decodeFrame(f).map((m) => `${m.type}(${m.payload?.length ?? m.reason ?? ''})`).join('+')
      } catch (err) {
        return `undecodable ${Buffer.from(f).toString('hex').slice(0, 40)}: ${err.message}`
      }
    })
    .join(', ')
}
