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
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'

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

/**
 * Calls `method` on the daemon of `pm2Home`. `unreachable`: no daemon listens there (no socket,
 * a stale socket of a dead daemon, a socket we may not open, a daemon that died mid-call): the
 * caller falls back to the CLI, which behaves as it always did (it spawns the daemon).
 * `timeout`: connected, but no answer (a hung daemon, which the CLI would wait on too).
 */
export const askDaemon = (pm2Home: string, method: string, timeoutMs: number): Promise<DaemonAnswer> => {
  const socketFile = join(pm2Home, 'rpc.sock')
  if (!existsSync(socketFile)) return Promise.resolve({ kind: 'unreachable', why: `no ${socketFile}` })
  const axon: { socket(type: 'req'): AxonReqSocket } = require(join(PM2_DIR, 'modules/pm2-axon'))
  const rpc: { Client: new (sock: AxonReqSocket) => RpcClient } = require(join(PM2_DIR, 'modules/pm2-axon-rpc'))
  return new Promise(resolve => {
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
    req.connect(socketFile)
  })
}
