/**
 * The drain steps on a real temp root (state.json, a release behind `current`, the env file, PM2's
 * pid file, log files) with our own seams faked: Exec (the preStop command, getent for the service
 * user), Pm2, the run lock and signals.
 */
import { execFileSync } from 'node:child_process'
import { lchownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { DRAIN_STEPS, locateDeployed, runDrain, type DrainSeams } from '../../../agent/src/watch/drain.js'
import { serializeEnv } from '../../../agent/src/secrets/env-file.js'
import type { Exec, RunOptions, RunResult } from '../../../agent/src/core/exec.js'
import type { LockHolder } from '../../../agent/src/run/lock.js'
import type { Pm2, Pm2Process } from '../../../agent/src/pm2/cli.js'
import { createScrubber } from '../../../agent/src/secrets/redact.js'
import { resolveWatchSettings } from '../../../agent/src/config/settings.js'
import type { DrainRecord } from '../../../agent/src/watch/state.js'

const SECRET = `s3cret-${Date.now()}-value`
/** the live release's id */
const LIVE = '20261124T050000Z-0123456789ab'
/** the service user getent answers with (below); its files are chowned to it when the test is root */
const SERVICE = { uid: 990, gid: 985 }

/** what the service user writes belongs to it, as on an instance (the agent reads only such files) */
const chownTree = (path: string) => {
  if (process.getuid?.() !== 0) return
  lchownSync(path, SERVICE.uid, SERVICE.gid)
  if (statSync(path).isDirectory()) for (const n of readdirSync(path)) chownTree(join(path, n))
}
const silent = () => pino({ level: 'debug' }, new Writable({ write: (_c, _e, done) => done() }))

const makeRoot = (o: { preStop?: string[]; deployed?: boolean } = {}) => {
  const root = mkdtempSync(join(tmpdir(), 'drain-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  if (o.deployed === false) return { root, release: '' }
  mkdirSync(join(root, 'var/lib/bootstrap-agent/home/.pm2'), { recursive: true })
  writeFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), JSON.stringify({ service: 'api' }))
  writeFileSync(join(root, 'var/lib/bootstrap-agent/home/.pm2/pm2.pid'), '4242\n')
  const release = join(root, `srv/api/releases/${LIVE}`)
  mkdirSync(join(release, 'svc'), { recursive: true })
  writeFileSync(join(release, 'bootstrap-agent.json'), JSON.stringify({
    version: 1,
    services: { api: { path: 'svc', start: { script: 'server.js' }, env: { PORT: '3000' }, killTimeoutMs: 1234, ...(o.preStop ? { preStop: o.preStop } : {}) } },
  }))
  writeFileSync(join(release, 'svc/server.js'), '')
  symlinkSync(`releases/${LIVE}`, join(root, 'srv/api/current'))
  mkdirSync(join(root, 'etc/bootstrap-agent/env'), { recursive: true })
  writeFileSync(join(root, 'etc/bootstrap-agent/env/api.env'), serializeEnv({ API_KEY: SECRET }), { mode: 0o600 })
  mkdirSync(join(root, 'srv/api/logs'))
  writeFileSync(join(root, 'srv/api/logs/api-out.log'), 'hello\n')
  mkdirSync(join(root, 'var/log/bootstrap-agent'), { recursive: true })
  writeFileSync(join(root, 'var/log/bootstrap-agent/agent.log'), '{}\n')
  for (const d of ['srv/api/releases', 'srv/api/logs', 'var/lib/bootstrap-agent/home', 'etc/bootstrap-agent/env']) chownTree(join(root, d))
  return { root, release }
}

interface Fakes {
  seams: DrainSeams
  execCalls: { file: string; args: readonly string[]; opts: RunOptions }[]
  pm2Calls: string[]
  pm2Timeouts: number[]
  signals: [number, string][]
}

const fakes = (o: { preStop?: Partial<RunResult>; procs?: Pm2Process[]; holder?: LockHolder; holderDies?: boolean; pm2Alive?: boolean } = {}): Fakes => {
  const f: Fakes = { execCalls: [], pm2Calls: [], pm2Timeouts: [], signals: [], seams: undefined as unknown as DrainSeams }
  let holder = o.holder
  const exec: Exec = {
    async run(file, args, opts) {
      f.execCalls.push({ file, args, opts })
      if (file === 'getent') return { exitCode: 0, stdout: 'bootstrap-app:x:990:985::/nonexistent:/usr/sbin/nologin\n', stderr: '', timedOut: false }
      return { exitCode: 0, stdout: '', stderr: '', timedOut: false, ...o.preStop }
    },
  }
  const pm2: Pm2 = {
    list: async () => (f.pm2Calls.push('list'), o.procs ?? [{ name: 'api', pmId: 0, pid: 10, status: 'online', restarts: 0, uptimeSince: 1 }]),
    start: async () => void f.pm2Calls.push('start'),
    reload: async () => void f.pm2Calls.push('reload'),
    delete: async () => void f.pm2Calls.push('delete'),
    ensureDaemon: async () => void f.pm2Calls.push('ensureDaemon'),
    save: async () => void f.pm2Calls.push('save'),
    kill: async () => void f.pm2Calls.push('kill'),
    stop: async name => void f.pm2Calls.push(`stop ${name}`),
  }
  f.seams = {
    exec,
    pm2: (_p, _u, timeoutMs) => (f.pm2Timeouts.push(timeoutMs), pm2),
    runInProgress: async () => holder,
    signal: (pid, sig) => {
      f.signals.push([pid, sig])
      if (o.holderDies !== false) holder = undefined
    },
    isAlive: () => o.pm2Alive ?? true,
    sleep: async () => undefined,
  }
  return f
}

const drain = async (root: string, f: Fakes, flags: Record<string, string> = {}) => {
  const settings = resolveWatchSettings({ flags: { root, ...flags }, env: {}, agentEnv: {}, mode: 'aws' })
  const scrubber = createScrubber()
  const record: DrainRecord = { reason: 'terminated', trigger: 'test', startedAt: new Date().toISOString(), outcome: 'running', steps: [] }
  let saves = 0
  const deployed = await locateDeployed(settings, f.seams.exec)
  await runDrain({ settings, log: silent(), scrubber, seams: f.seams, deployed }, record, async () => void saves++)
  return { record, saves, step: (n: string) => record.steps.find(s => s.name === n) }
}

t.test('the steps, in order', async t => {
  t.same(DRAIN_STEPS.map(s => s.name), ['stop-run', 'pre-stop', 'stop', 'flush-logs'])
})

t.test('a full drain: preStop as the service user with the service environment, then a graceful PM2 stop', async t => {
  const { root, release } = makeRoot({ preStop: ['node', 'bye.js', '--now'] })
  const f = fakes()
  const { record, saves, step } = await drain(root, f, { 'pre-stop-timeout': '7' })
  t.equal(record.outcome, 'ok')
  t.same(record.steps.map(s => [s.name, s.status]), [['stop-run', 'skipped'], ['pre-stop', 'ok'], ['stop', 'ok'], ['flush-logs', 'ok']])
  t.equal(saves, 4, 'saved after every step')
  const call = f.execCalls.find(c => c.file === process.execPath)
  t.ok(call, 'preStop ran through node')
  t.match(call?.args, ['--import', /env-preload\.js$/, /run-with-env\.js$/, 'node', 'bye.js', '--now'], 'the same load path as the service: env-preload + run-with-env')
  t.equal(call?.opts.cwd, join(release, 'svc'), 'in the live release, the service path applied')
  t.match(call?.opts, { uid: 990, gid: 985, timeoutMs: 7000 })
  t.match(call?.opts.env, { PORT: '3000', BOOTSTRAP_ENV_FILE: join(root, 'etc/bootstrap-agent/env/api.env'), BOOTSTRAP_SERVICE: 'api' })
  t.notMatch(JSON.stringify(call?.opts.env), SECRET, 'the secret is loaded by the child from the env file, never passed')
  t.same(f.pm2Calls, ['list', 'stop api'])
  t.same(f.pm2Timeouts, [1234 + 30_000], 'the PM2 call outlasts the kill_timeout')
  t.match(step('stop')?.detail, 'api stopped gracefully (SIGINT, SIGKILL after kill_timeout 1234 ms; 1 process)')
  t.match(step('flush-logs')?.detail, /^2 log files synced to disk/)
})

t.test('--pm2-timeout: the PM2 calls get the kill_timeout plus it, at most 30 s of it', async t => {
  const { root } = makeRoot()
  const f = fakes()
  await drain(root, f, { 'pm2-timeout': '5' })
  t.same(f.pm2Timeouts, [1234 + 5000])
})

t.test('preStop failing or timing out: recorded (secret masked), the service is still stopped', async t => {
  const { root } = makeRoot({ preStop: ['./bye'] })
  const failing = fakes({ preStop: { exitCode: 3, stderr: `oops: API_KEY=${SECRET}\n` } })
  const r = await drain(root, failing)
  t.equal(r.record.outcome, 'failed')
  t.match(r.step('pre-stop'), { status: 'failed', detail: '[DRAIN_PRESTOP_FAILED] preStop ["./bye"] exited 3: oops: API_KEY=[REDACTED]' })
  t.notMatch(JSON.stringify(r.record), SECRET)
  t.match(r.step('stop'), { status: 'ok' })
  const slow = fakes({ preStop: { exitCode: -1, timedOut: true } })
  const r2 = await drain(root, slow)
  t.match(r2.step('pre-stop')?.detail, /\[DRAIN_PRESTOP_TIMEOUT\] preStop \["\.\/bye"\] did not finish within 30 s/)
})

t.test('a hostile service before the drain: FIFOs and links in its logs, PM2_HOME and env file stall nothing and show nothing', async t => {
  const { root } = makeRoot({ preStop: ['node', 'bye.js'] })
  const canary = join(root, 'canary.txt')
  writeFileSync(canary, 'canary-only-root-reads-this', { mode: 0o600 })
  const logs = join(root, 'srv/api/logs')
  const envFile = join(root, 'etc/bootstrap-agent/env/api.env')
  const pid = join(root, 'var/lib/bootstrap-agent/home/.pm2/pm2.pid')
  // this test opts in to child processes: Node has no mkfifo. Each FIFO would block root's open
  // for reading until a writer came: forever.
  execFileSync('mkfifo', [join(logs, 'evil.fifo')])
  symlinkSync(canary, join(logs, 'api-error.log'))
  rmSync(envFile)
  execFileSync('mkfifo', [envFile])
  rmSync(pid)
  execFileSync('mkfifo', [pid])
  for (const d of ['srv/api/logs', 'var/lib/bootstrap-agent/home', 'etc/bootstrap-agent/env']) chownTree(join(root, d))
  const f = fakes()
  const r = await drain(root, f)
  t.same(r.record.steps.map(s => [s.name, s.status]), [['stop-run', 'skipped'], ['pre-stop', 'ok'], ['stop', 'ok'], ['flush-logs', 'ok']], 'the drain ran to its end')
  t.same(f.pm2Calls, ['list', 'stop api'], 'a pid file that is a FIFO: PM2 is asked, and the service still stopped')
  t.match(r.step('flush-logs')?.detail, /^2 log files synced/, 'the FIFO and the link passed over: the real log and agent.log')
  t.notMatch(JSON.stringify(r.record), /canary-only/)
})

t.test('the service user unknown: PM2 is not run (as root) at all', async t => {
  const { root } = makeRoot()
  const f = fakes()
  const noUser: Exec = { run: async (file, args, opts) => (file === 'getent' ? { exitCode: 2, stdout: '', stderr: '', timedOut: false } : f.seams.exec.run(file, args, opts)) }
  if (process.getuid?.() !== 0) return t.pass('not root: PM2 runs as the agent itself')
  const r = await drain(root, { ...f, seams: { ...f.seams, exec: noUser } })
  t.match(r.step('stop'), { status: 'failed', detail: /\[DRAIN_STOP_FAILED\] the service user of api could not be found .*PM2 is never run as root/ })
  t.same(f.pm2Calls, [])
})

t.test('nothing deployed, no preStop, PM2 not running, app stopped already: skipped with the reason', async t => {
  const empty = makeRoot({ deployed: false })
  const r = await drain(empty.root, fakes())
  t.same(r.record.steps.map(s => [s.name, s.status]), [['stop-run', 'skipped'], ['pre-stop', 'skipped'], ['stop', 'skipped'], ['flush-logs', 'ok']])
  t.match(r.step('pre-stop')?.detail, /^nothing deployed under /)
  const { root } = makeRoot()
  t.match((await drain(root, fakes())).step('pre-stop')?.detail, 'the manifest declares no preStop')
  t.match((await drain(root, fakes({ pm2Alive: false }))).step('stop')?.detail, /^PM2 is not running/)
  const stopped = fakes({ procs: [{ name: 'api', pmId: 0, pid: 0, status: 'stopped', restarts: 0, uptimeSince: undefined }] })
  t.match((await drain(root, stopped)).step('stop'), { status: 'skipped', detail: 'api is stopped already' })
  t.notOk(stopped.pm2Calls.includes('stop api'))
  t.match((await drain(root, fakes({ procs: [] }))).step('stop')?.detail, 'api is not a PM2 app')
})

t.test('a run in progress is stopped first: SIGTERM, and SIGKILL if it ignores it', async t => {
  const { root } = makeRoot()
  const holder: LockHolder = { pid: 777, bootId: 'b', startTicks: '1', startedAt: '2026-01-01T00:00:00Z', reason: 'boot', command: 'run', hostname: 'h' }
  const obeys = fakes({ holder })
  t.match((await drain(root, obeys)).step('stop-run'), { status: 'ok', detail: 'stopped run pid 777 (reason boot, since 2026-01-01T00:00:00Z) with SIGTERM' })
  t.same(obeys.signals, [[777, 'SIGTERM']])
  const stubborn = fakes({ holder, holderDies: false })
  t.match((await drain(root, stubborn)).step('stop-run')?.detail, /ignored SIGTERM for 10 s: SIGKILL/)
  t.same(stubborn.signals, [[777, 'SIGTERM'], [777, 'SIGKILL']])
})

t.test('an unreadable live release: preStop fails with the reason, the stop still happens', async t => {
  const { root, release } = makeRoot({ preStop: ['x'] })
  writeFileSync(join(release, 'bootstrap-agent.json'), '{ not json')
  const f = fakes()
  const r = await drain(root, f)
  t.match(r.step('pre-stop'), { status: 'failed', detail: /the live release of api could not be read: bootstrap-agent.json is not valid JSON/ })
  t.match(r.step('stop'), { status: 'ok', detail: /kill_timeout 5000 ms/ })
  const named = await locateDeployed(resolveWatchSettings({ flags: { root, service: 'other' }, env: {}, agentEnv: {}, mode: 'aws' }), f.seams.exec)
  t.match(named, { service: 'other' }, '--service wins over state.json')
  t.equal(named?.serviceDir, undefined, 'nothing of it is live')
})
