/**
 * `bootstrap-agent watch` end to end: the real CLI against moto (Auto Scaling describe calls,
 * Secrets Manager) behind the lifecycle proxy (which records the terminating hook's heartbeats
 * and CONTINUE), our IMDSv2 server switching target lifecycle states and spot notices, and a real
 * PM2 service deployed by a real run. The service answers /slow only after it got SIGINT, so a
 * request is provably in flight when PM2 stops it; the preStop command leaves a marker with a
 * fingerprint of a secret, proving it ran as the service user with the service environment.
 * Every drain sends its run report to moto's CloudWatch Logs before the hook's CONTINUE.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager'
import { startAwsWorld } from '../helpers/aws-world.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { findLeaks, leaksAfterRun } from '../helpers/leak-scan.js'
import { asService, canarySeen, changes, fifoAsService, makeOutside, serviceUserOf, snapshot } from '../helpers/boundary.js'
import type { LifecycleCall } from '../helpers/lifecycle-proxy.js'
import { sampleCmdlines } from '../helpers/proc-sampler.js'
import { BIN, freePort, getJson, pm2List, removeSandbox, REPO, runCli, sandboxDir, type CliResult } from '../helpers/sandbox.js'

const dir = sandboxDir('watch')
const root = join(dir, 'root')
t.teardown(() => removeSandbox(dir, root))

const world = await startAwsWorld(t)
const { moto, proxy } = world

const service = 'app'
const apiKey = `key-${randomBytes(16).toString('hex')}`
const SECRETS = [apiKey]
const fp = (v: string) => createHash('sha256').update(v).digest('hex')
await world.sm.send(new CreateSecretCommand({ Name: `stage/${service}`, SecretString: JSON.stringify({ API_KEY: apiKey }) }))

const termHook = 'drain-on-terminate'
const launchHook = 'launching'
const { asgName, instanceId } = await world.createGroup({
  hooks: [
    { name: launchHook },
    { name: termHook, transition: 'autoscaling:EC2_INSTANCE_TERMINATING', defaultResult: 'CONTINUE' },
  ],
})

// ---------------------------------------------------------------------------------------------
// the service: /slow is answered only after SIGINT (so it is in flight when PM2 stops the app);
// SIGINT closes the server, which waits for that answer before the process exits

const port = await freePort()
const markers = join(dir, 'markers')
mkdirSync(markers)
chmodSync(markers, 0o777)
const marker = join(markers, 'pre-stop.jsonl')
const failFlag = join(markers, 'fail-pre-stop')
const SERVER = `
const http = require('node:http')
const { createHash } = require('node:crypto')
const fp = v => v === undefined ? null : createHash('sha256').update(v).digest('hex')
const held = []
const server = http.createServer((req, res) => {
  if (req.url === '/slow') {
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' })
    res.flushHeaders()
    held.push(res)
    setTimeout(() => res.end('no SIGINT came'), 60000).unref()
    return
  }
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ apiKey: fp(process.env.API_KEY), pid: process.pid }))
}).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGINT', () => {
  console.log('SIGINT: closing the server, answering ' + held.length + ' request(s) in flight')
  setTimeout(() => { for (const res of held) res.end('done after SIGINT') }, 1500)
  server.close(() => process.exit(0))
})
`
const PRE_STOP = `
const fs = require('node:fs')
const { createHash } = require('node:crypto')
if (fs.existsSync(process.env.FAIL_FLAG)) { console.error('pre-stop: the flag file asks for a failure'); process.exit(3) }
// long enough for heartbeats (interval 1 s in this test) to be sent while the drain runs
setTimeout(() => {
  const apiKey = process.env.API_KEY === undefined ? null : createHash('sha256').update(process.env.API_KEY).digest('hex')
  fs.appendFileSync(process.env.MARKER, JSON.stringify({ uid: process.getuid(), cwd: process.cwd(), apiKey }) + '\\n')
  // a careless preStop that prints the secret: the agent log and the watch's output must mask it
  console.log('pre-stop: done, key ' + process.env.API_KEY)
  console.error('pre-stop: stderr key ' + process.env.API_KEY)
}, 2500)
`
const files = {
  'package.json': JSON.stringify({ name: 'app', version: '1.0.0', private: true, main: 'server.js' }),
  'package-lock.json': JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'app', version: '1.0.0' } } }),
  'server.js': SERVER,
  'pre-stop.js': PRE_STOP,
  'bootstrap-agent.json': JSON.stringify({
    version: 1,
    services: {
      [service]: {
        start: { script: 'server.js' },
        env: { PORT: String(port), MARKER: marker, FAIL_FLAG: failFlag },
        health: { url: `http://127.0.0.1:${port}/health`, timeoutSeconds: 20 },
        requiredEnv: ['API_KEY'],
        killTimeoutMs: 8000,
        preStop: ['node', 'pre-stop.js'],
      },
    },
  }),
}
const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: files } })

const imds = await world.startImds({ instanceId, tags: { Service: service, Environment: 'stage', Repository: repo.fileUrl }, lifecycleState: 'InService' })

// runs and drains send their run reports here (the drain's: before the terminating hook's CONTINUE)
const REPORTS = `/bootstrap-agent/stage/${service}`
await world.createLogGroup(REPORTS)
const ENV = world.agentEnv(imds.endpoint, { BOOTSTRAP_CONFIG_PARAMETER: 'none', BOOTSTRAP_REPORT_LOG_GROUP: '/bootstrap-agent/{environment}/{service}' })
const drainReports = async () => (await world.logEvents(REPORTS)).map(e => JSON.parse(e.message ?? '{}') as { kind: string; instanceId: string; hookAfter?: string; drain?: { outcome: string; steps: { name: string }[] } }).filter(r => r.kind === 'drain')
const envFile = join(root, `etc/bootstrap-agent/env/${service}.env`)
const watchFile = join(root, 'var/lib/bootstrap-agent/watch.json')
const stateFile = join(root, 'var/lib/bootstrap-agent/state.json')

interface WatchJson {
  lastPollAt?: string
  targetState?: string | null
  imds: { ok: boolean; consecutiveFailures: number; error?: string }
  spotNotice?: { action: string }
  drain?: { reason: string; outcome: string; startedAt: string; finishedAt?: string; steps: { name: string; status: string; detail?: string }[] }
  hook?: { outcome: string; answered: boolean; detail: string }
  runs: { reason: string; exitCode?: number }[]
}
const watchState = (): WatchJson | undefined => (existsSync(watchFile) ? JSON.parse(readFileSync(watchFile, 'utf8')) as WatchJson : undefined)
const runState = () => JSON.parse(readFileSync(stateFile, 'utf8')) as { runId: string; reason: string; outcome: string }
const markerLines = () => (existsSync(marker) ? readFileSync(marker, 'utf8').trim().split('\n').filter(Boolean) : [])
const step = (name: string) => watchState()?.drain?.steps.find(s => s.name === name)

/** Polls until `ok` holds; the bound only turns a hang into a failure that says what it waited for. */
const waitFor = async (what: string, ok: () => boolean, boundMs = 45_000): Promise<void> => {
  for (const end = Date.now() + boundMs; Date.now() < end; await sleep(100)) if (ok()) return
  throw new Error(`gave up waiting for ${what}; watch.json: ${JSON.stringify(watchState())}`)
}
/** two more polls after now: enough for the watch to have acted on what it sees */
const twoPolls = async () => {
  for (let i = 0; i < 2; i++) {
    const before = watchState()?.lastPollAt
    await waitFor('the next poll', () => watchState()?.lastPollAt !== before)
  }
}

interface Watch {
  stop(): Promise<CliResult>
}
/** `bootstrap-agent watch` as systemd runs it (SIGTERM to stop), polling every second */
const startWatch = async (t: Test, opts: { sample?: boolean } = {}): Promise<Watch> => {
  const sampler = opts.sample ? sampleCmdlines() : undefined
  await sampler?.ready
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', ...ENV }
  const child = spawn('/usr/bin/env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, BIN,
    'watch', '--root', root, '--json', '--watch-interval', '1', '--heartbeat-interval', '1', '--imds-token-ttl', '3'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', c => (stdout += c))
  child.stderr.on('data', c => (stderr += c))
  const closed = new Promise<number | null>(resolve => child.on('close', resolve))
  t.teardown(() => void child.kill('SIGKILL'))
  await waitFor('the first poll', () => {
    if (child.exitCode !== null) throw new Error(`watch exited ${child.exitCode}: ${stderr}${stdout.slice(-2000)}`)
    return watchState()?.lastPollAt !== undefined
  })
  return {
    async stop() {
      child.kill('SIGTERM')
      const code = await closed
      return { code, stdout, stderr, cmdlines: (await sampler?.stop()) ?? [] }
    },
  }
}

const terminatingCalls = (from: number): LifecycleCall[] => proxy.calls.slice(from).filter(c => c.hookName === termHook)
const completions = (calls: LifecycleCall[]) => calls.filter(c => c.action === 'CompleteLifecycleAction' && c.status === 200)
const heartbeats = (calls: LifecycleCall[]) => calls.filter(c => c.action === 'RecordLifecycleActionHeartbeat' && c.status === 200)
const appStatus = () => pm2List(root).find(p => p.name === service)?.pm2_env.status
const deploy = async (t: Test, reason = 'manual') => {
  const r = await runCli(['run', '--reason', reason, '--root', root, '--json', '--stable-window', '1'], ENV)
  t.equal(r.code, 0, `run --reason ${reason} exits 0`, r.code === 0 ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-4000) })
  t.equal(appStatus(), 'online', 'the service is online')
}
/** a new instance lifetime for the next case: the drain record is per lifetime */
const newLifetime = () => rmSync(watchFile, { force: true })

// the IAM policy, as shipped: every action seen during this file must be in it
const policy = JSON.parse(readFileSync(join(REPO, 'iam/agent-policy.json'), 'utf8')) as { Statement: { Action: string | string[] }[] }
const POLICY = new Set(policy.Statement.flatMap(s => (Array.isArray(s.Action) ? s.Action : [s.Action])))

await moto.startRecording()
const proxyStart = proxy.calls.length

t.test('boot run deploys the service; its ecosystem carries the manifest killTimeoutMs', async t => {
  await deploy(t, 'boot')
  const eco = JSON.parse(readFileSync(join(root, `srv/${service}/ecosystem.json`), 'utf8')) as { apps: { kill_timeout: number }[] }
  t.equal(eco.apps[0]?.kill_timeout, 8000, 'PM2 kill_timeout = killTimeoutMs: the drain waits that long for a graceful exit')
})

t.test('warm pool: Warmed:Running -> InService starts run --reason warm-pool; InService at start starts nothing', async t => {
  newLifetime()
  const before = runState().runId
  const w = await startWatch(t)
  await twoPolls()
  t.equal(runState().runId, before, 'InService when the watch starts: no run (bootstrap-agent.service does the boot run)')
  t.same(watchState()?.runs, [])
  imds.set({ lifecycleState: 'Warmed:Running' })
  await twoPolls()
  t.same(watchState()?.runs, [], 'Warmed:Running is no termination and no reason to run')
  // leaving the pool, the instance waits on the launching hook (Pending:Wait) until the run answers
  const calls = proxy.calls.length
  proxy.setActive([{ instanceId, hookName: launchHook, state: 'Pending:Wait' }])
  t.teardown(() => proxy.setActive([]))
  imds.set({ lifecycleState: 'InService' })
  await waitFor('the warm-pool run to finish', () => watchState()?.runs[0]?.exitCode !== undefined, 90_000)
  t.match(watchState()?.runs, [{ reason: 'warm-pool', exitCode: 0 }])
  const launching = proxy.calls.slice(calls).filter(c => c.hookName === launchHook && c.action === 'CompleteLifecycleAction' && c.status === 200)
  t.match(launching, [{ instanceId, result: 'CONTINUE' }], 'the run completed the launching hook: CONTINUE, once')
  t.equal(launching.length, 1)
  t.match(runState(), { reason: 'warm-pool', outcome: 'success' }, 'a normal run, under the run lock, recorded in state.json')
  t.not(runState().runId, before)
  t.equal(watchState()?.drain, undefined, 'nothing drained')
  t.equal((await w.stop()).code, 0, 'SIGTERM: exit 0')
})

t.test('Terminated: an in-flight request completes, preStop ran, the app is stopped, the hook gets one CONTINUE', async t => {
  newLifetime()
  const calls = proxy.calls.length
  const imdsFrom = imds.requests.length
  proxy.setActive([{ instanceId, hookName: termHook, state: 'Terminating:Wait' }])
  t.teardown(() => proxy.setActive([]))
  const w = await startWatch(t, { sample: true })
  const res = await fetch(`http://127.0.0.1:${port}/slow`)
  t.equal(res.status, 200)
  const body = res.text()
  imds.set({ lifecycleState: 'Terminated' })
  t.equal(await body, 'done after SIGINT', 'the request in flight when PM2 sent SIGINT was answered in full')
  await waitFor('the terminating hook', () => watchState()?.hook !== undefined)
  await twoPolls()

  const st = watchState()
  t.match(st?.drain, { reason: 'terminated', outcome: 'ok', finishedAt: String })
  t.same(st?.drain?.steps.map(s => [s.name, s.status]), [['stop-run', 'skipped'], ['pre-stop', 'ok'], ['stop', 'ok'], ['flush-logs', 'ok']])
  t.match(step('stop')?.detail, /stopped gracefully \(SIGINT, SIGKILL after kill_timeout 8000 ms/)
  t.equal(appStatus(), 'stopped', 'PM2 reports the app stopped')
  const serviceUid = statSync(envFile).uid
  t.match(markerLines().map(l => JSON.parse(l) as unknown), [{ uid: serviceUid, apiKey: fp(apiKey), cwd: new RegExp(`${root}/srv/${service}/releases/`) }],
    'preStop ran once, as the service user, in the live release, with the secrets of the env file')
  const mine = terminatingCalls(calls)
  t.match(completions(mine), [{ instanceId, asgName, hookName: termHook, result: 'CONTINUE' }], 'exactly one CompleteLifecycleAction: CONTINUE')
  t.equal(completions(mine).length, 1)
  t.ok(heartbeats(mine).length >= 1, `heartbeats while the drain ran (${heartbeats(mine).length})`)
  t.match(st?.hook, { outcome: 'completed', answered: true })

  const status = await runCli(['status', '--root', root])
  t.comment(`status after the drain:\n${status.stdout}`)
  t.match(status.stdout, /drain\s+ok \(terminated: target lifecycle state Terminated\)/)
  t.match(status.stdout, /pre-stop\s+ok/)
  t.match(status.stdout, /terminating hook\s+completed/)
  const json = JSON.parse((await runCli(['status', '--root', root, '--json'])).stdout) as { watch: WatchJson & { running: boolean } }
  t.match(json.watch, { running: true, targetState: 'Terminated', drain: { outcome: 'ok' }, hook: { outcome: 'completed' } })

  const r = await w.stop()
  t.equal(r.code, 0)
  t.same(leaksAfterRun(SECRETS, root, envFile, r), [], 'no secret value in logs, watch.json, PM2, command lines or output')
  t.match(await drainReports(), [{ instanceId, hookAfter: 'CONTINUE', drain: { outcome: 'ok', steps: [{ name: 'stop-run' }, { name: 'pre-stop' }, { name: 'stop' }, { name: 'flush-logs' }] } }], "the drain's run report is in CloudWatch Logs")
  const lines = r.stdout.split('\n').filter(l => l.startsWith('{')).map(l => (JSON.parse(l) as { msg: string }).msg)
  const sent = lines.indexOf(`run report sent to CloudWatch Logs group ${REPORTS}`)
  const continued = lines.indexOf('lifecycle action completed: CONTINUE')
  t.ok(sent >= 0 && continued > sent, `sent before the CONTINUE (log lines ${sent} < ${continued})`)
  // the preStop's own output (which printed the key) reached the agent log and the watch's output, masked
  const agentLog = readFileSync(join(root, 'var/log/bootstrap-agent/agent.log'), 'utf8')
  t.match(agentLog, /pre-stop: done, key (?!key-)/, 'the preStop stdout line is in the agent log, its secret masked')
  t.match(r.stdout + r.stderr, /pre-stop: stderr key (?!key-)/, 'and its stderr line in the watch output')
  const mineImds = imds.requests.slice(imdsFrom)
  t.ok(mineImds.filter(q => q.method === 'PUT').length >= 2, 'the 3 s IMDSv2 token was renewed')
  t.equal(mineImds.filter(q => q.status === 401).length, 0, 'renewed before it expired: no request was refused')
  t.equal(imds.tokenlessRequests, 0, 'IMDSv1 was never tried')
  imds.set({ lifecycleState: 'InService' })
})

t.test('spot notice: one drain (with IMDS unreachable on the way); Terminated later completes the hook without a second drain', async t => {
  await deploy(t)
  newLifetime()
  rmSync(marker, { force: true })
  const calls = proxy.calls.length
  const w = await startWatch(t)
  imds.set({ unreachable: true })
  await waitFor('two failed polls', () => (watchState()?.imds.consecutiveFailures ?? 0) >= 2)
  t.match(watchState()?.imds, { ok: false, error: /IMDSv2/ })
  imds.set({ unreachable: false })
  await waitFor('IMDS to answer again', () => watchState()?.imds.ok === true)
  t.equal(appStatus(), 'online', 'an unreachable IMDS is no reason to drain')

  imds.set({ spotAction: { action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() } })
  await waitFor('the spot drain', () => watchState()?.hook !== undefined)
  t.match(watchState(), { spotNotice: { action: 'terminate' }, drain: { reason: 'spot-interruption', outcome: 'ok' } })
  t.match(watchState()?.hook, { outcome: 'not-applicable', answered: false }, 'not in Terminating:Wait yet: the hook waits for Terminated')
  t.equal(appStatus(), 'stopped')
  t.equal(markerLines().length, 1, 'preStop ran')
  const drainedAt = watchState()?.drain?.startedAt

  proxy.setActive([{ instanceId, hookName: termHook, state: 'Terminating:Wait' }])
  t.teardown(() => proxy.setActive([]))
  imds.set({ lifecycleState: 'Terminated' })
  await waitFor('the terminating hook', () => watchState()?.hook?.answered === true)
  await twoPolls()
  t.match(completions(terminatingCalls(calls)), [{ instanceId, hookName: termHook, result: 'CONTINUE' }])
  t.equal(completions(terminatingCalls(calls)).length, 1, 'completed once')
  t.equal(markerLines().length, 1, 'no second drain: preStop ran once')
  t.equal(watchState()?.drain?.startedAt, drainedAt, 'the drain record is the spot one')
  t.equal((await w.stop()).code, 0)
  imds.set({ lifecycleState: 'InService', spotAction: undefined })
})

t.test('a failing preStop: the service is still stopped and the hook still gets CONTINUE', async t => {
  await deploy(t)
  newLifetime()
  writeFileSync(failFlag, '')
  t.teardown(() => rmSync(failFlag, { force: true }))
  const calls = proxy.calls.length
  proxy.setActive([{ instanceId, hookName: termHook, state: 'Terminating:Wait' }])
  t.teardown(() => proxy.setActive([]))
  const w = await startWatch(t, { sample: true })
  imds.set({ lifecycleState: 'Terminated' })
  t.teardown(() => imds.set({ lifecycleState: 'InService' }))
  await waitFor('the terminating hook', () => watchState()?.hook !== undefined)
  t.match(watchState()?.drain, { outcome: 'failed' })
  t.match(step('pre-stop'), { status: 'failed', detail: /\[DRAIN_PRESTOP_FAILED\] preStop \["node","pre-stop.js"\] exited 3: pre-stop: the flag file asks for a failure/ })
  t.match(step('stop'), { status: 'ok' }, 'the graceful stop still happened')
  t.equal(appStatus(), 'stopped')
  t.match(completions(terminatingCalls(calls)), [{ hookName: termHook, result: 'CONTINUE' }], 'CONTINUE: the instance goes away regardless')
  t.equal(completions(terminatingCalls(calls)).length, 1)
  const status = await runCli(['status', '--root', root])
  t.match(status.stdout, /drain\s+failed \(terminated/)
  t.match(status.stdout, /pre-stop\s+failed .*exited 3/)
  const r = await w.stop()
  t.equal(r.code, 0)
  t.same(leaksAfterRun(SECRETS, root, envFile, r), [], 'no secret value anywhere')
  t.match((await drainReports()).at(-1), { drain: { outcome: 'failed' } }, 'the failed drain is reported too')
  const events = await world.logEvents(REPORTS)
  t.same(findLeaks(SECRETS, { root, allow: [envFile], texts: Object.fromEntries(events.map((e, i) => [`report ${i}`, e.message ?? ''])) }), [], 'no secret value in the run reports')
})

t.test('a termination during a run: the run is stopped first, then the drain, then CONTINUE', async t => {
  await deploy(t)
  newLifetime()
  const calls = proxy.calls.length
  const lock = join(root, 'var/lib/bootstrap-agent/lock')
  // the run retries a throttled Secrets Manager for up to a minute: it holds the lock meanwhile
  proxy.failNext('BatchGetSecretValue', 400, 'ThrottlingException', 1000)
  t.teardown(() => proxy.failNext('BatchGetSecretValue', 400, 'ThrottlingException', 0))
  const w = await startWatch(t)
  const run = runCli(['run', '--reason', 'ssm', '--root', root, '--json'], ENV)
  await waitFor('the run to hold the lock', () => existsSync(lock))
  proxy.setActive([{ instanceId, hookName: termHook, state: 'Terminating:Wait' }])
  t.teardown(() => proxy.setActive([]))
  imds.set({ lifecycleState: 'Terminated' })
  t.teardown(() => imds.set({ lifecycleState: 'InService' }))
  await waitFor('the terminating hook', () => watchState()?.hook !== undefined)
  const r = await run
  t.not(r.code, 0, 'the run did not finish: it was stopped')
  t.match(step('stop-run'), { status: 'ok', detail: /^stopped run pid \d+ \(reason ssm, since .*\) with SIGTERM$/ })
  t.match(step('stop'), { status: 'ok' }, JSON.stringify(watchState()?.drain?.steps))
  t.equal(appStatus(), 'stopped', 'nothing started the service again')
  t.match(completions(terminatingCalls(calls)), [{ hookName: termHook, result: 'CONTINUE' }])
  t.equal(completions(terminatingCalls(calls)).length, 1)
  t.equal((await w.stop()).code, 0)
})

t.test('every AWS action the watch (and its runs) called is in iam/agent-policy.json', async t => {
  await moto.stopRecording()
  const actions = new Set([
    ...(await moto.recordedActions()).map(a => `${a.service}:${a.action}`),
    ...proxy.calls.slice(proxyStart).map(c => `autoscaling:${c.action}`),
  ])
  t.ok(actions.has('autoscaling:DescribeLifecycleHooks'), 'the terminating hook was looked up')
  t.ok(actions.has('autoscaling:CompleteLifecycleAction'))
  // the test's own reads of the report group (drainReports) are recorded too; the agent reads none
  t.same([...actions].filter(a => !POLICY.has(a) && a !== 'logs:FilterLogEvents').sort(), [], 'all in the policy')
  t.ok(actions.has('logs:PutLogEvents'), 'the run and drain reports were sent')
})

t.test('watch refuses local mode (no IMDS), exit 2', async t => {
  const r = await runCli(['watch', '--local', '--root', root], ENV)
  t.equal(r.code, 2)
  t.match(r.stderr, /\[WATCH_NEEDS_AWS\]: watch polls the instance metadata service/)
  t.ok(existsSync(join(root, 'var/lib/bootstrap-agent')))
  await getJson(`http://127.0.0.1:${port}/health`).then(() => t.fail('the service is stopped'), () => t.pass('the service stays stopped'))
})

// last: what it plants (and its teardown restores) in PM2_HOME and the logs cannot leak into the
// other cases' drains
t.test('a compromised service before the drain: FIFOs and links in its logs and PM2_HOME stall nothing, show nothing; one CONTINUE', async t => {
  await deploy(t)
  newLifetime()
  const outside = makeOutside(dir)
  const outsideBefore = snapshot([outside.dir])
  const logs = join(root, `srv/${service}/logs`)
  const pidFile = join(root, 'var/lib/bootstrap-agent/home/.pm2/pm2.pid')
  const user = serviceUserOf(logs)
  const pid = readFileSync(pidFile, 'utf8')
  // what it plants while it runs: each FIFO would block root's open for reading until a writer
  // came (forever), each link would show root's file to whoever reads the output
  fifoAsService(user, join(logs, 'evil.fifo'))
  asService(user, 'ln', ['-s', outside.canary, join(logs, 'evil.log')])
  asService(user, 'rm', [pidFile])
  fifoAsService(user, pidFile)
  t.teardown(() => {
    rmSync(join(logs, 'evil.fifo'), { force: true })
    rmSync(join(logs, 'evil.log'), { force: true })
    // the daemon wrote its pid at start and runs on: the next cases find it by this file
    rmSync(pidFile, { force: true })
    asService(user, 'tee', [pidFile], pid)
  })
  const calls = proxy.calls.length
  proxy.setActive([{ instanceId, hookName: termHook, state: 'Terminating:Wait' }])
  t.teardown(() => proxy.setActive([]))
  const w = await startWatch(t)
  imds.set({ lifecycleState: 'Terminated' })
  t.teardown(() => imds.set({ lifecycleState: 'InService' }))
  await waitFor('the terminating hook', () => watchState()?.hook !== undefined)
  t.match(watchState()?.drain, { outcome: 'ok', finishedAt: String }, 'the drain ran to its end')
  t.same(watchState()?.drain?.steps.map(s => [s.name, s.status]), [['stop-run', 'skipped'], ['pre-stop', 'ok'], ['stop', 'ok'], ['flush-logs', 'ok']])
  t.equal(appStatus(), 'stopped', 'a pid file that is a FIFO: PM2 was asked, the service stopped gracefully')
  t.match(completions(terminatingCalls(calls)), [{ hookName: termHook, result: 'CONTINUE' }], 'the hook completed: CONTINUE')
  t.equal(completions(terminatingCalls(calls)).length, 1)
  const r = await w.stop()
  t.equal(r.code, 0)
  t.same(canarySeen(outside, root, { stdout: r.stdout, stderr: r.stderr }), [], 'the root-only canary is in no output, log or watch.json')
  t.same(changes(outsideBefore, snapshot([outside.dir])), [], 'nothing outside the service\'s directories changed')
  t.equal(statSync(watchFile).mode & 0o777, 0o644, 'watch.json 0644: nothing in it the service may not read')
  t.same(leaksAfterRun(SECRETS, root, envFile, r), [], 'no secret value anywhere')
})
