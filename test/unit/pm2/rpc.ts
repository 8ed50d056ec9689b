/**
 * askDaemon against a daemon stand-in on a real unix socket in a temp PM2_HOME, served by PM2's
 * own server half of the protocol (pm2-axon `rep` + pm2-axon-rpc `Server`, what PM2's daemon
 * runs). No child processes.
 */
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { askDaemon } from '../../../agent/src/pm2/rpc.js'

const require = createRequire(import.meta.url)
const pm2Dir = dirname(require.resolve('pm2/package.json'))

interface RepSocket { bind(path: string): void; close(): void; once(e: 'bind', fn: () => void): void }
interface RpcServer { expose(name: string, fn: (arg: unknown, done: (err: unknown, value?: unknown) => void) => void): void }
const axon: { socket(type: 'rep'): RepSocket } = require(join(pm2Dir, 'modules/pm2-axon'))
const rpc: { Server: new (sock: RepSocket) => RpcServer } = require(join(pm2Dir, 'modules/pm2-axon-rpc'))

const home = async (t: Test) => {
  const d = await mkdtemp(join(tmpdir(), 'pm2-rpc-'))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

/** A daemon answering getMonitorData with `answer` (or never, or with an error). */
const daemon = async (t: Test, dir: string, answer: 'hang' | Error | unknown[]) => {
  const rep = axon.socket('rep')
  const server = new rpc.Server(rep)
  server.expose('getMonitorData', (_arg, done) => {
    if (answer === 'hang') return
    if (answer instanceof Error) done(answer)
    else done(null, answer)
  })
  await new Promise<void>(resolve => {
    rep.once('bind', resolve)
    rep.bind(join(dir, 'rpc.sock'))
  })
  t.teardown(() => rep.close())
}

/** PM2_HOME = home, both this test user's */
const H = (dir: string, owner = process.getuid?.() ?? 0) => ({ home: dir, pm2Home: dir, owner })

const APP = { name: 'app', pm_id: 0, pid: 4242, pm2_env: { status: 'online', restart_time: 0 } }

t.test('a running daemon: its list, as `pm2 jlist` prints it', async t => {
  const dir = await home(t)
  await daemon(t, dir, [APP])
  t.same(await askDaemon(H(dir), 'getMonitorData', 5000), { kind: 'answer', value: [APP] })
  t.same(await askDaemon(H(dir), 'getMonitorData', 5000), { kind: 'answer', value: [APP] }, 'again: each question has its own connection')
})

t.test('no daemon: unreachable, so the caller can fall back to the CLI', async t => {
  const dir = await home(t)
  t.match(await askDaemon(H(dir), 'getMonitorData', 5000), { kind: 'unreachable', why: /no .*rpc\.sock/ }, 'no socket file')
  // a daemon killed with SIGKILL leaves its socket file behind
  const stale = createServer()
  await new Promise<void>(resolve => stale.listen(join(dir, 'rpc.sock'), resolve))
  await new Promise<void>(resolve => stale.close(() => resolve()))
  await writeFile(join(dir, 'rpc.sock'), '')
  t.match(await askDaemon(H(dir), 'getMonitorData', 5000), { kind: 'unreachable' }, 'a socket file nobody listens on')
})

t.test('a socket root must not trust is not asked: a link to another socket, one of another user', async t => {
  const real = await home(t)
  await daemon(t, real, [APP])
  const dir = await home(t)
  await symlink(join(real, 'rpc.sock'), join(dir, 'rpc.sock'))
  t.match(await askDaemon(H(dir), 'getMonitorData', 5000), { kind: 'unreachable', why: /symbolic link: not asked/ }, 'a link is not followed')
  t.match(await askDaemon(H(real, 4242), 'getMonitorData', 5000), { kind: 'unreachable', why: /a socket of uid \d+, not the service user's/ })
  t.same(await askDaemon(H(real), 'getMonitorData', 5000), { kind: 'answer', value: [APP] }, 'the real one still answers')
})

t.test('a daemon that answers with an error: unreachable (the CLI is asked instead)', async t => {
  const dir = await home(t)
  await daemon(t, dir, new Error('boom'))
  t.match(await askDaemon(H(dir), 'getMonitorData', 5000), { kind: 'unreachable', why: /boom/ })
})

t.test('a hung daemon (connected, no answer): timeout', async t => {
  const dir = await home(t)
  await daemon(t, dir, 'hang')
  t.same(await askDaemon(H(dir), 'getMonitorData', 200), { kind: 'timeout' })
})
