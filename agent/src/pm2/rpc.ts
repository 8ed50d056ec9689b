/**
 * Read-only questions to a running PM2 daemon over its RPC socket (`PM2_HOME/rpc.sock`), with
 * PM2's own client modules (pm2-axon, pm2-axon-rpc, shipped inside PM2's package). `pm2 jlist`
 * asks the daemon exactly this (`getMonitorData`), but through a new CLI process that costs
 * ~180 ms of Node start-up and PM2 loading per call; the agent asks it at least twice a run
 * (start, then every health poll). The answer is the same objects the CLI prints.
 *
 * Only reads go this way. Everything that changes PM2's state (start, reload, save, delete, kill)
 * stays a CLI call run as the service user: the CLI writes dump.pm2 and spawns the daemon with
 * that user's identity and minimal environment (pm2/cli.ts), which an in-process call would not.
 */
import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { kindOf, openBeneath } from '../core/beneath.js'
import { messageOf } from '../core/errors.js'
import { pm2File, type Pm2Home } from './home.js'

/** the subset of pm2-axon's req socket we use */
interface AxonReqSocket {
  set(name: string, value: number): void
  connect(path: string): void
  close(): void
  once(event: 'connect' | 'close', fn: () => void): void
  once(event: 'error', fn: (e: unknown) => void): void
}

interface RpcClient {
  call(method: string, arg: unknown, done: (err: unknown, value: unknown) => void): void
}

export type DaemonAnswer = { kind: 'answer'; value: unknown } | { kind: 'unreachable'; why: string } | { kind: 'timeout' }

const require = createRequire(import.meta.url)
const PM2_DIR = dirname(require.resolve('pm2/package.json'))

/** Linux's O_PATH (x86-64, arm64): a descriptor naming the socket without opening it; Node's
 * constants lack it */
const O_PATH = 0o10000000

/**
 * The daemon's socket, as a path root may connect to: the socket file found below PM2_HOME
 * without following a link and checked (a socket, the service user's), then reached through the
 * descriptor (`/proc/self/fd/N`), so a link planted or swapped in cannot point root's connection
 * at another program's socket. The handle stays open until the connection is made.
 */
const daemonSocket = async (h: Pm2Home): Promise<{ fh: FileHandle; path: string } | string> => {
  const f = pm2File(h, 'rpc.sock')
  let fh: FileHandle
  try {
    fh = await openBeneath(f.dir, f.rel, O_PATH | constants.O_NOFOLLOW)
  } catch (e) {
    return `no usable ${join(f.dir, f.rel)}: ${messageOf(e)}`
  }
  const st = await fh.stat()
  if (!st.isSocket() || st.uid !== h.owner) {
    await fh.close()
    return `${join(f.dir, f.rel)} is ${st.isSocket() ? `a socket of uid ${st.uid}, not the service user's` : kindOf(st)}: not asked`
  }
  return { fh, path: `/proc/self/fd/${fh.fd}` }
}

/**
 * Calls `method` on the daemon of PM2_HOME. `unreachable`: no daemon listens there (no socket,
 * a stale socket of a dead daemon, a socket we may not open or must not trust, a daemon that
 * died mid-call): the caller falls back to the CLI (as the service user), which behaves as it
 * always did (it spawns the daemon). `timeout`: connected, but no answer (a hung daemon, which
 * the CLI would wait on too).
 */
export const askDaemon = async (h: Pm2Home, method: string, timeoutMs: number): Promise<DaemonAnswer> => {
  const sock = await daemonSocket(h)
  if (typeof sock === 'string') return { kind: 'unreachable', why: sock }
  const socketFile = join(h.pm2Home, 'rpc.sock')
  const axon: { socket(type: 'req'): AxonReqSocket } = require(join(PM2_DIR, 'modules/pm2-axon'))
  const rpc: { Client: new (sock: AxonReqSocket) => RpcClient } = require(join(PM2_DIR, 'modules/pm2-axon-rpc'))
  return new Promise<DaemonAnswer>(resolve => {
    const req = axon.socket('req')
    // no reconnect loop: a refused or dropped connection ends the question ('close')
    req.set('retry timeout', 0)
    const client = new rpc.Client(req)
    let settled = false
    const finish = (a: DaemonAnswer) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.close()
      resolve(a)
    }
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs)
    let connected = false
    req.once('error', e => finish({ kind: 'unreachable', why: e instanceof Error ? e.message : String(e) }))
    req.once('close', () => finish({ kind: 'unreachable', why: connected ? 'the daemon closed the connection' : `nothing listens on ${socketFile}` }))
    req.once('connect', () => {
      connected = true
      client.call(method, {}, (err, value) => finish(err ? { kind: 'unreachable', why: err instanceof Error ? err.message : String(err) } : { kind: 'answer', value }))
    })
    req.connect(sock.path)
  }).finally(() => sock.fh.close())
}
