/**
 * The fault matrix of docs/reliability.md, injected for real: the agent CLI in AWS mode against
 * moto (behind the lifecycle proxy), an IMDSv2 server, a private repository over smart HTTP, a
 * tiny npm tarball server, real npm ci, real PM2 and a real service, with a fault-injecting proxy
 * (test/helpers/fault-proxy.ts) in front of each dependency. One sandbox: a first good deploy,
 * then one fault per run. Every case checks the exit code, that stderr names the dependency and
 * a remedy, that state.json tells the truth, that the previous good release still serves, and
 * that the waiting lifecycle action got exactly one answer (ABANDON on failure, CONTINUE after a
 * recovered fault). The AWS and PM2 cells that wait out a timeout run with BOOTSTRAP_AWS_TIMEOUT /
 * BOOTSTRAP_PM2_TIMEOUT of 2 s (defaults 60 s and 120 s), set for that run only.
 */
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chownSync, existsSync, mkdirSync, readFileSync, readlinkSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager'
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import { startAwsWorld } from '../helpers/aws-world.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { startFileServer } from '../helpers/file-server.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { startGitHttpServer } from '../helpers/git-http-server.js'
import { findLeaks } from '../helpers/leak-scan.js'
import type { LifecycleCall } from '../helpers/lifecycle-proxy.js'
import { freePort, killPm2, pm2Home, pm2List, removeSandbox, runCli, sandboxDir, type CliResult } from '../helpers/sandbox.js'

// ---------------------------------------------------------------------------------------------
// the real servers, each behind its own fault proxy; all stopped in teardown

// a ceiling for a loaded machine, not a timing assertion: the cases take about 2-3 minutes here
t.setTimeout(600_000)

const dir = sandboxDir('fault-matrix')
const root = join(dir, 'root')
t.teardown(() => removeSandbox(dir, root))

const proxies: FaultProxy[] = []
const faultProxy = async (target: string) => {
  const p = await startFaultProxy(target)
  proxies.push(p)
  t.teardown(() => p.stop())
  return p
}

const world = await startAwsWorld(t)
const lp = world.proxy
const smProxy = await faultProxy(lp.endpoint)
const ssmProxy = await faultProxy(lp.endpoint)
const asgProxy = await faultProxy(lp.endpoint)

const token = `tok-${randomBytes(16).toString('hex')}`
const apiKey = `key-${randomBytes(16).toString('hex')}`
const dbPass = `db-${randomBytes(16).toString('hex')}`
const wrongToken = `wrong-${randomBytes(16).toString('hex')}`
const SECRETS = [token, apiKey, dbPass, wrongToken]

const git = await startGitHttpServer({ projectRoot: join(dir, 'git'), username: 'deploy', password: token })
t.teardown(() => git.stop())
const gitProxy = await faultProxy(git.url(''))

// an npm "registry": one tarball, fetched by the `resolved` URL of the lockfile
const tarball = join(dir, 'tiny-1.0.0.tgz')
mkdirSync(join(dir, 'tiny/package'), { recursive: true })
writeFileSync(join(dir, 'tiny/package/package.json'), JSON.stringify({ name: 'tiny', version: '1.0.0', main: 'index.js' }))
writeFileSync(join(dir, 'tiny/package/index.js'), "module.exports = 'tiny'\n")
execFileSync('tar', ['-czf', tarball, '-C', join(dir, 'tiny'), 'package'])
const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`
const registry = await startFileServer({ '/tiny/-/tiny-1.0.0.tgz': tarball })
t.teardown(() => registry.stop())
const registryProxy = await faultProxy(registry.url('/'))

// ---------------------------------------------------------------------------------------------
// the service: a small HTTP server whose /health can misbehave in each of the ways the matrix asks

const port = await freePort()
const url = `http://127.0.0.1:${port}/health`
/** nobody listens here (the npm registry of the fixture app, an unreachable tarball host) */
const closedPort = await freePort()

type HealthMode = 'ok' | 'error' | 'slow' | 'flaky' | 'deaf'
interface AppOptions {
  greeting: string
  health?: HealthMode
  /** extra package.json fields (scripts, dependencies) */
  pkg?: Record<string, unknown>
  /** the lockfile's `packages` beyond the root, and root fields */
  lock?: { root?: Record<string, unknown>; packages?: Record<string, unknown> }
  /** the lockfile's text instead (a broken one) */
  lockText?: string
}

const app = (o: AppOptions): Record<string, string> => {
  const pkg = { name: 'app', version: '1.0.0', private: true, main: 'server.js', ...o.pkg }
  const lock = {
    name: 'app', version: pkg.version, lockfileVersion: 3, requires: true,
    packages: { '': { name: 'app', version: pkg.version, ...o.lock?.root }, ...o.lock?.packages },
  }
  const health = o.health ?? 'ok'
  return {
    'package.json': `${JSON.stringify(pkg, null, 2)}\n`,
    'package-lock.json': o.lockText ?? `${JSON.stringify(lock, null, 2)}\n`,
    // npm's own retry settings live in the repository, as an application team would set them;
    // the registry is a closed port: packages come only from the lockfile's `resolved` URLs
    '.npmrc': `registry=http://127.0.0.1:${closedPort}/\nfetch-retries=1\nfetch-retry-mintimeout=100\nfetch-retry-maxtimeout=300\naudit=false\nfund=false\n`,
    'server.js': `
const http = require('node:http')
const { realpathSync } = require('node:fs')
const { basename } = require('node:path')
const mode = ${JSON.stringify(health)}
let answered = 0
const body = () => JSON.stringify({ greeting: ${JSON.stringify(o.greeting)}, release: basename(realpathSync(__dirname)), keyLength: (process.env.API_KEY || '').length })
const server = http.createServer((req, res) => {
  answered += 1
  if (mode === 'error') { res.statusCode = 500; res.end('{"error":"database unreachable"}'); return }
  if (mode === 'flaky' && answered <= 3) { res.statusCode = 503; res.end('{"error":"warming up"}'); return }
  if (mode === 'slow') { setTimeout(() => res.end(body()), 8000); return }
  res.setHeader('content-type', 'application/json')
  res.end(body())
})
// a deaf release runs but never listens: its health endpoint refuses connections
if (mode === 'deaf') { console.log('started, not listening'); setInterval(() => {}, 60000) }
else server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'))
`,
    'bootstrap-agent.json': `${JSON.stringify({
      version: 1,
      services: { app: { start: { script: 'server.js' }, env: { PORT: String(port) }, health: { url }, requiredEnv: ['API_KEY'] } },
    }, null, 2)}\n`,
  }
}

const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: app({ greeting: 'v1' }) } })
const deployCommit = (o: AppOptions) => repo.commit('stage', app(o), o.greeting)

// ---------------------------------------------------------------------------------------------
// moto: the secrets, the parameter, an Auto Scaling group with a launching hook

const { sm, ssm } = world
const service = 'app'
const hookName = 'bootstrap-launch'
const gitSecretId = `git/${service}`
const setGitToken = (value: string) => sm.send(new PutSecretValueCommand({ SecretId: gitSecretId, SecretString: JSON.stringify({ username: 'deploy', token: value }) }))

await sm.send(new CreateSecretCommand({ Name: `stage/${service}`, SecretString: JSON.stringify({ API_KEY: apiKey }) }))
await sm.send(new CreateSecretCommand({ Name: gitSecretId, SecretString: JSON.stringify({ username: 'deploy', token }) }))
await ssm.send(new PutParameterCommand({ Name: `/stage/${service}/db/password`, Value: dbPass, Type: 'SecureString' }))
const { asgName, instanceId } = await world.createGroup({ hooks: [{ name: hookName }] })

const imds = await world.startImds({
  instanceId, lifecycleState: 'InService',
  tags: { Service: service, Environment: 'stage', Repository: gitProxy.url('app.git') },
})
const imdsProxy = await faultProxy(imds.endpoint)

// ---------------------------------------------------------------------------------------------
// the agent, as systemd starts it on an instance; every dependency reached through its proxy

const ENV = world.agentEnv(imdsProxy.endpoint, {
  AWS_ENDPOINT_URL_SECRETS_MANAGER: smProxy.endpoint,
  AWS_ENDPOINT_URL_SSM: ssmProxy.endpoint,
  AWS_ENDPOINT_URL_AUTO_SCALING: asgProxy.endpoint,
  BOOTSTRAP_GIT_CREDENTIAL_SECRET: gitSecretId,
})
const FLAGS: Record<string, string> = {
  'stable-window': '1', 'heartbeat-interval': '1', 'health-timeout': '5',
  'git-timeout': '10', 'git-attempts': '2', 'install-timeout': '120',
}
const args = (flags: Record<string, string>) =>
  ['run', '--reason', 'boot', '--root', root, '--json', ...Object.entries({ ...FLAGS, ...flags }).flatMap(([k, v]) => [`--${k}`, v])]

const envFile = join(root, `etc/bootstrap-agent/env/${service}.env`)
const serviceDir = join(root, `srv/${service}`)
const current = () => readlinkSync(join(serviceDir, 'current'))

interface StateJson {
  outcome: string
  exitCode?: number
  commit?: string
  phases: { name: string; status: string; detail?: string }[]
  error?: { code: string; message: string; remedy: string; phase?: string }
}
const state = (): StateJson => JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8')) as StateJson
const phase = (name: string) => state().phases.find(p => p.name === name)

interface Run {
  r: CliResult
  /** lifecycle calls made during the run, accepted or not */
  lifecycle: LifecycleCall[]
}

/** per case: how long the agent ran (for the record in docs/reliability.md, never asserted) */
const timings: [string, number][] = []

/** One agent run, the instance waiting on its launching lifecycle action meanwhile; `env` adds
 * to the agent's environment for this run only (BOOTSTRAP_AWS_TIMEOUT, BOOTSTRAP_PM2_TIMEOUT). */
const run = async (t: Test, flags: Record<string, string> = {}, env: Record<string, string> = {}): Promise<Run> => {
  lp.setActive([{ instanceId, hookName }])
  const before = lp.calls.length
  const t0 = Date.now()
  const r = await runCli(args(flags), { ...ENV, ...env })
  timings.push([t.name, Date.now() - t0])
  lp.setActive([])
  return { r, lifecycle: lp.calls.slice(before) }
}

/** for the cells that wait out the AWS budget (60 s by default) or the PM2 timeout (120 s) */
const AWS_FAST = { BOOTSTRAP_AWS_TIMEOUT: '2' }
const PM2_FAST = { BOOTSTRAP_PM2_TIMEOUT: '2' }

const accepted = (calls: LifecycleCall[]) => calls.filter(c => c.action === 'CompleteLifecycleAction' && c.status === 200)

const greeting = async (): Promise<unknown> => {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return ((await res.json()) as Record<string, unknown>)['greeting']
}

/** the secrets are nowhere but the env file: not in the output, any file or any argv */
const noLeaks = (t: Test, r: CliResult) =>
  t.same(findLeaks(SECRETS, { root, allow: [envFile], texts: { stdout: r.stdout, stderr: r.stderr }, cmdlines: r.cmdlines }), [], 'no secret value leaked')

interface Expect {
  exit: number
  code: string
  phase: string
  /** what stderr must say about the dependency */
  names: RegExp
  /** what the remedy line must say */
  remedy: RegExp
  /** the greeting the previous good release answers with */
  serving: string
  /** ABANDON: the waiting action is abandoned exactly once; none: no completion is possible */
  hook: 'ABANDON' | 'none'
  outcome?: 'failed' | 'rolled-back'
}

/** A run that failed cleanly: exit code, message, state.json, the old release, the hook. */
const failedCleanly = async (t: Test, { r, lifecycle }: Run, e: Expect) => {
  const extra = r.code === e.exit ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-6000) }
  t.equal(r.code, e.exit, `exit ${e.exit}`, extra)
  t.match(r.stderr, `[${e.code}]`, `stderr has the error code ${e.code}`)
  t.match(r.stderr, e.names, 'stderr names the dependency')
  t.match(r.stderr, /\n {2}what to do: \S/, 'stderr says what to do')
  t.match(r.stderr.split('what to do:')[1] ?? '', e.remedy, 'the remedy fits the fault')
  const s = state()
  t.equal(s.outcome, e.outcome ?? 'failed', `state.json outcome ${e.outcome ?? 'failed'}`)
  t.equal(s.exitCode, e.exit, 'state.json exit code')
  t.match(s.error, { code: e.code, phase: e.phase }, `state.json error ${e.code} in ${e.phase}`)
  t.equal(phase(e.phase)?.status, 'failed', `the ${e.phase} phase is recorded as failed`)
  t.equal(await greeting(), e.serving, `the previous good release (${e.serving}) still serves`)
  const done = accepted(lifecycle)
  if (e.hook === 'ABANDON') {
    t.match(done, [{ instanceId, hookName, asgName, result: 'ABANDON' }], 'the waiting lifecycle action is abandoned')
    t.equal(done.length, 1, 'exactly one completion')
  } else {
    t.same(done, [], 'no completion (the instance could not be identified, or the group not found)')
  }
  noLeaks(t, r)
}

/** A run that met a fault, retried, and succeeded. */
const recovered = async (t: Test, { r, lifecycle }: Run, serving: string, commit?: string) => {
  t.equal(r.code, 0, 'exit 0', r.code === 0 ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-6000) })
  const s = state()
  t.equal(s.outcome, 'success', 'state.json outcome success')
  t.equal(s.error, undefined, 'no error in state.json')
  if (commit) t.equal(s.commit, commit, 'state.json names the deployed commit')
  t.equal(await greeting(), serving, `${serving} serves`)
  const done = accepted(lifecycle)
  t.match(done, [{ instanceId, hookName, asgName, result: 'CONTINUE' }], 'the waiting lifecycle action continues')
  t.equal(done.length, 1, 'exactly one completion')
  noLeaks(t, r)
}

/** every proxy passes again, whatever a case left behind */
const clearFaults = async () => {
  for (const p of proxies) await p.clear()
  for (const a of ['BatchGetSecretValue', 'GetSecretValue', 'GetParametersByPath', 'GetParameter', 'DescribeAutoScalingInstances', 'DescribeLifecycleHooks', 'CompleteLifecycleAction', 'RecordLifecycleActionHeartbeat']) {
    lp.failNext(a, 400, 'ThrottlingException', 0)
  }
}
t.afterEach(clearFaults)

// ---------------------------------------------------------------------------------------------

t.test('a first good deploy: v1 serves, CONTINUE', async t => {
  const c = await run(t)
  await recovered(t, c, 'v1', await repo.head('stage'))
  t.equal(statSync(envFile).mode & 0o777, 0o600)
})

t.test('IMDS', async t => {
  t.test('unreachable: exit 2, IMDS_UNREACHABLE, nothing changed, no hook can be completed', async t => {
    await imdsProxy.refuse()
    const before = current()
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 2, code: 'IMDS_UNREACHABLE', phase: 'identify', serving: 'v1', hook: 'none',
      names: /instance metadata service \(IMDSv2\) at http:\/\/127\.0\.0\.1:\d+ did not answer/, remedy: /HttpEndpoint=enabled/,
    })
    t.equal(current(), before)
  })

  t.test('slower than its timeout (2 s per request): exit 2 after the retries', async t => {
    imdsProxy.fail({ kind: 'stall' })
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 2, code: 'IMDS_UNREACHABLE', phase: 'identify', serving: 'v1', hook: 'none',
      names: /instance metadata service \(IMDSv2\)[^\n]*did not answer/, remedy: /HttpEndpoint=enabled/,
    })
    t.equal(imdsProxy.requests.filter(q => q.fault === 'stall').length, 3, 'three attempts (retries: 2), each given up')
  })

  t.test('permanent error (403: metadata endpoint disabled): exit 2, IMDSv1 never tried', async t => {
    imdsProxy.fail({ kind: 'status', status: 403 })
    const before = imdsProxy.requests.length
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 2, code: 'IMDS_UNREACHABLE', phase: 'identify', serving: 'v1', hook: 'none',
      names: /IMDSv2 token request \(PUT \/latest\/api\/token\) was refused, and IMDSv1 is never used/, remedy: /HttpEndpoint=enabled/,
    })
    const seen = imdsProxy.requests.slice(before)
    t.same(seen.filter(q => q.method !== 'PUT' && q.headers['x-aws-ec2-metadata-token'] === undefined), [], 'no token-less (IMDSv1) request')
  })

  t.test('transient (a stalled request, then a 503): retried, success', async t => {
    imdsProxy.fail({ kind: 'stall' }, 1)
    imdsProxy.fail({ kind: 'status', status: 503 }, 1)
    const c = await run(t)
    await recovered(t, c, 'v1')
    t.equal(imdsProxy.faulted(), 2, 'both faults were met')
    t.equal(imds.tokenlessRequests, 0, 'IMDSv1 was never tried')
  })
})

t.test('Secrets Manager', async t => {
  t.test('transient (a reset connection, then ThrottlingException twice): retried, success', async t => {
    smProxy.fail({ kind: 'reset' }, 1)
    lp.failNext('BatchGetSecretValue', 400, 'ThrottlingException', 2)
    const c = await run(t)
    await recovered(t, c, 'v1')
    t.equal(smProxy.faulted(), 1)
    t.match(c.r.stdout, /AWS BatchGetSecretValue failed \(ThrottlingException\); retrying/)
  })

  t.test('permanent (AccessDeniedException): exit 1, nothing changed, ABANDON', async t => {
    const before = current()
    const envBefore = readFileSync(envFile, 'utf8')
    lp.failNext('BatchGetSecretValue', 400, 'AccessDeniedException', 99, 'User is not authorized to perform: secretsmanager:BatchGetSecretValue')
    lp.failNext('GetSecretValue', 400, 'AccessDeniedException', 99, 'User is not authorized to perform: secretsmanager:GetSecretValue')
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_ACCESS_DENIED', phase: 'fetch', serving: 'v1', hook: 'ABANDON',
      names: /AWS secretsmanager:GetSecretValue on git\/app failed/, remedy: /add secretsmanager:GetSecretValue on git\/app to the instance profile/,
    })
    t.equal(current(), before)
    t.equal(readFileSync(envFile, 'utf8'), envBefore, 'the env file is untouched')
  })

  // the first Secrets Manager call the run waits for is the git credential, in fetch
  t.test('unreachable (connection refused) for --aws-timeout: exit 1, AWS_UNREACHABLE, nothing changed, ABANDON', async t => {
    await smProxy.refuse()
    const before = current()
    const envBefore = readFileSync(envFile, 'utf8')
    const c = await run(t, {}, AWS_FAST)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_UNREACHABLE', phase: 'fetch', serving: 'v1', hook: 'ABANDON',
      names: /AWS secretsmanager:BatchGetSecretValue on git\/app failed after \d+ attempts: ECONNREFUSED/, remedy: /check that the instance can reach the secretsmanager endpoint/,
    })
    t.match(c.r.stdout, /AWS \w+ failed \(ECONNREFUSED\); retrying/, 'retried within the budget')
    t.equal(current(), before)
    t.equal(readFileSync(envFile, 'utf8'), envBefore, 'the env file is untouched')
  })

  t.test('slower than --aws-timeout (every request stalls): each attempt cut at it, AWS_UNREACHABLE, ABANDON', async t => {
    smProxy.fail({ kind: 'stall' })
    const before = current()
    const c = await run(t, {}, AWS_FAST)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_UNREACHABLE', phase: 'fetch', serving: 'v1', hook: 'ABANDON',
      names: /AWS secretsmanager:BatchGetSecretValue on git\/app failed: TimeoutError[^\n]*2000 ms requestTimeout/, remedy: /check that the instance can reach the secretsmanager endpoint/,
    })
    t.ok(smProxy.requests.some(q => q.fault === 'stall'), 'the requests stalled')
    t.equal(current(), before)
  })
})

t.test('SSM Parameter Store', async t => {
  t.test('transient (a 503, then ThrottlingException twice): retried, success', async t => {
    ssmProxy.fail({ kind: 'status', status: 503 }, 1)
    lp.failNext('GetParametersByPath', 400, 'ThrottlingException', 2)
    const c = await run(t)
    await recovered(t, c, 'v1')
    t.equal(ssmProxy.faulted(), 1)
    t.match(c.r.stdout, /AWS GetParametersByPath failed \(ThrottlingException\); retrying/)
  })

  t.test('permanent (AccessDeniedException): exit 1, nothing changed, ABANDON', async t => {
    const before = current()
    lp.failNext('GetParametersByPath', 400, 'AccessDeniedException', 99, 'User is not authorized to perform: ssm:GetParametersByPath')
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_ACCESS_DENIED', phase: 'secrets', serving: 'v1', hook: 'ABANDON',
      names: /AWS ssm:GetParametersByPath on \/stage\/app\/ failed/, remedy: /add ssm:GetParametersByPath on \/stage\/app\/ to the instance profile/,
    })
    t.equal(current(), before)
  })

  // the first SSM call is the agent configuration parameter, in resolve: the settings are never
  // complete, and the hook is answered without them
  t.test('unreachable (connection refused) for --aws-timeout: exit 1 in resolve, nothing changed, ABANDON', async t => {
    await ssmProxy.refuse()
    const before = current()
    const c = await run(t, {}, AWS_FAST)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_UNREACHABLE', phase: 'resolve', serving: 'v1', hook: 'ABANDON',
      names: /AWS ssm:GetParameter on \/bootstrap\/stage\/app failed after \d+ attempts: ECONNREFUSED/, remedy: /check that the instance can reach the ssm endpoint/,
    })
    t.equal(current(), before)
  })

  t.test('slower than --aws-timeout (every request stalls): each attempt cut at it, AWS_UNREACHABLE in resolve, ABANDON', async t => {
    ssmProxy.fail({ kind: 'stall' })
    const before = current()
    const c = await run(t, {}, AWS_FAST)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_UNREACHABLE', phase: 'resolve', serving: 'v1', hook: 'ABANDON',
      names: /AWS ssm:GetParameter on \/bootstrap\/stage\/app failed: TimeoutError[^\n]*2000 ms requestTimeout/, remedy: /check that the instance can reach the ssm endpoint/,
    })
    t.ok(ssmProxy.requests.some(q => q.fault === 'stall'), 'the requests stalled')
    t.equal(current(), before)
  })
})

t.test('Auto Scaling API', async t => {
  t.test('transient (describe, heartbeat and completion throttled): retried, one CONTINUE', async t => {
    asgProxy.fail({ kind: 'reset' }, 1)
    lp.failNext('DescribeAutoScalingInstances', 400, 'Throttling', 2)
    lp.failNext('RecordLifecycleActionHeartbeat', 500, 'InternalFailure', 2)
    lp.failNext('CompleteLifecycleAction', 400, 'Throttling', 2)
    const c = await run(t)
    await recovered(t, c, 'v1')
    t.equal(c.lifecycle.filter(x => x.action === 'CompleteLifecycleAction').length, 3, 'two throttled completion attempts, then the accepted one')
  })

  t.test('permanent on DescribeAutoScalingInstances: exit 1 before anything changed, no completion possible', async t => {
    const before = current()
    lp.failNext('DescribeAutoScalingInstances', 400, 'AccessDenied', 99, 'User is not authorized to perform: autoscaling:DescribeAutoScalingInstances')
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_ACCESS_DENIED', phase: 'resolve', serving: 'v1', hook: 'none',
      names: /AWS autoscaling:DescribeAutoScalingInstances on i-\w+ failed/, remedy: /add autoscaling:DescribeAutoScalingInstances/,
    })
    t.equal(current(), before)
    t.equal(c.lifecycle.length, 0, 'no lifecycle call at all')
  })

  t.test('permanent on CompleteLifecycleAction after a good deploy', async t => {
    lp.failNext('CompleteLifecycleAction', 400, 'AccessDenied', 99, 'User is not authorized to perform: autoscaling:CompleteLifecycleAction')
    const { r, lifecycle } = await run(t)
    t.equal(r.code, 1, 'exit 1: the instance will not be put in service', { stderr: r.stderr })
    t.match(r.stderr, '[AWS_ACCESS_DENIED]')
    t.match(r.stderr, /autoscaling:CompleteLifecycleAction/)
    t.match(r.stderr, /what to do: add autoscaling:CompleteLifecycleAction/)
    const s = state()
    t.equal(s.outcome, 'failed')
    t.equal(phase('complete')?.status, 'failed')
    t.equal(phase('verify')?.status, 'ok', 'the release itself is healthy')
    t.match(s.error, { code: 'AWS_ACCESS_DENIED', phase: 'complete' }, 'state.json names the error')
    t.equal(await greeting(), 'v1')
    t.equal(accepted(lifecycle).length, 0, 'the action was not completed (Auto Scaling applies its DefaultResult at the timeout)')
    t.equal(lifecycle.filter(x => x.action === 'CompleteLifecycleAction').length, 1, 'access denied is not retried')
  })

  // discovery fails in resolve, and again in complete (on the same budget): nothing names the
  // group, so Auto Scaling applies the hook's DefaultResult at its HeartbeatTimeout
  t.test('unreachable (connection refused) for --aws-timeout: exit 1 in resolve, nothing changed, no completion possible', async t => {
    await asgProxy.refuse()
    const before = current()
    const c = await run(t, {}, AWS_FAST)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_UNREACHABLE', phase: 'resolve', serving: 'v1', hook: 'none',
      names: /AWS autoscaling:DescribeAutoScalingInstances on i-\w+ failed after \d+ attempts: ECONNREFUSED/, remedy: /check that the instance can reach the autoscaling endpoint/,
    })
    t.equal(current(), before)
    t.equal(c.lifecycle.length, 0, 'no lifecycle call reached Auto Scaling')
    t.match(phase('complete'), { status: 'failed', detail: /DescribeAutoScalingInstances[^]*ECONNREFUSED/ }, 'complete tried discovery again')
  })

  t.test('slower than --aws-timeout (every request stalls): each attempt cut at it, exit 1 in resolve, no completion possible', async t => {
    asgProxy.fail({ kind: 'stall' })
    const before = current()
    const c = await run(t, {}, AWS_FAST)
    await failedCleanly(t, c, {
      exit: 1, code: 'AWS_UNREACHABLE', phase: 'resolve', serving: 'v1', hook: 'none',
      names: /AWS autoscaling:DescribeAutoScalingInstances on i-\w+ failed: TimeoutError[^\n]*2000 ms requestTimeout/, remedy: /check that the instance can reach the autoscaling endpoint/,
    })
    t.equal(current(), before)
    t.equal(c.lifecycle.length, 0, 'no lifecycle call reached Auto Scaling')
    t.ok(asgProxy.requests.filter(q => q.fault === 'stall').length >= 2, 'stalled in resolve, and again in complete')
    t.match(phase('complete'), { status: 'failed', detail: /DescribeAutoScalingInstances[^]*TimeoutError/ }, 'complete tried discovery again')
  })
})

t.test('git remote', async t => {
  t.test('unreachable (connection refused): exit 1 after 2 attempts, ABANDON', async t => {
    await gitProxy.refuse()
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'GIT_UNREACHABLE', phase: 'fetch', serving: 'v1', hook: 'ABANDON',
      names: /git could not reach branch "stage" of "http:\/\/127\.0\.0\.1:\d+\/app\.git"/, remedy: /network path to the git host/,
    })
    t.match(c.r.stdout, /git attempt failed; retrying/)
  })

  t.test('slower than --git-timeout: GIT_TIMEOUT after 2 attempts, ABANDON', async t => {
    gitProxy.fail({ kind: 'stall' })
    const c = await run(t, { 'git-timeout': '2' })
    await failedCleanly(t, c, {
      exit: 1, code: 'GIT_TIMEOUT', phase: 'fetch', serving: 'v1', hook: 'ABANDON',
      names: /git gave no answer for branch "stage" of "http:\/\/127\.0\.0\.1:\d+\/app\.git" within 2000 ms/, remedy: /raise the git timeout/,
    })
    t.equal(gitProxy.requests.filter(q => q.fault === 'stall').length, 2, 'one request per attempt')
  })

  t.test('permanent (a wrong token in the credential secret): exit 1 at once, ABANDON', async t => {
    await setGitToken(wrongToken)
    t.teardown(() => setGitToken(token))
    const before = gitProxy.requests.length
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'GIT_AUTH_FAILED', phase: 'fetch', serving: 'v1', hook: 'ABANDON',
      names: /git could not authenticate to "http:\/\/127\.0\.0\.1:\d+\/app\.git"/, remedy: /check the token \(or deploy key\) in the git credential secret/,
    })
    t.notMatch(c.r.stdout, /git attempt failed; retrying/, 'not retried')
    t.ok(gitProxy.requests.length - before <= 3, 'one ls-remote: no retries')
  })

  t.test('transient (a stalled request, then a 503): retried, v2 deployed', async t => {
    const commit = await deployCommit({ greeting: 'v2' })
    gitProxy.fail({ kind: 'stall' }, 1)
    gitProxy.fail({ kind: 'status', status: 503 }, 1)
    const c = await run(t, { 'git-timeout': '4', 'git-attempts': '3' })
    await recovered(t, c, 'v2', commit)
    t.equal(gitProxy.faulted(), 2)
    t.match(c.r.stdout, /git attempt failed; retrying/)
  })
})

t.test('npm ci', async t => {
  const releases = () => readdirSync(join(serviceDir, 'releases'))

  t.test('permanent (a lockfile broken by a merge conflict): exit 2, nothing switched, ABANDON', async t => {
    const before = current()
    const commit = await deployCommit({ greeting: 'v3 conflict', lockText: '<<<<<<< HEAD\n{ "name": "app" }\n=======\n>>>>>>> feature\n' })
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 2, code: 'LOCKFILE_INVALID', phase: 'install', serving: 'v2', hook: 'ABANDON',
      names: /package-lock\.json in [^\n]* is not valid JSON \(a merge-conflict marker on line 1\)/, remedy: /resolve the merge conflict/,
    })
    t.equal(current(), before)
    t.notOk(releases().some(r => r.endsWith(commit.slice(0, 12))), 'the failed release was removed')
  })

  t.test('slower than --install-timeout (an install script that hangs): NPM_CI_TIMEOUT, the script is killed too', async t => {
    const marker = `slow-install-${randomBytes(4).toString('hex')}`
    await deployCommit({ greeting: 'v3 slow', pkg: { version: '1.0.2', scripts: { preinstall: `node -e "setTimeout(() => {}, 120000)" ${marker}` } } })
    const c = await run(t, { 'install-timeout': '3' })
    await failedCleanly(t, c, {
      exit: 1, code: 'NPM_CI_TIMEOUT', phase: 'install', serving: 'v2', hook: 'ABANDON',
      names: /npm ci timed out after 3 s/, remedy: /raise BOOTSTRAP_INSTALL_TIMEOUT/,
    })
    const left = readdirSync('/proc').filter(p => /^\d+$/.test(p)).flatMap(p => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker) ? [p] : []
      } catch {
        return []
      }
    })
    t.same(left, [], 'no install script left running')
  })

  const tinyLock = (resolved: string) => ({
    root: { dependencies: { tiny: '1.0.0' } },
    packages: { 'node_modules/tiny': { version: '1.0.0', resolved, integrity } },
  })
  const withTiny = (greeting: string, version: string, resolved: string): AppOptions =>
    ({ greeting, pkg: { version, dependencies: { tiny: '1.0.0' } }, lock: tinyLock(resolved) })

  t.test('registry unreachable: exit 1, NPM_REGISTRY_UNREACHABLE, ABANDON', async t => {
    await deployCommit(withTiny('v3 offline', '1.0.3', `http://127.0.0.1:${closedPort}/tiny/-/tiny-1.0.0.tgz`))
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'NPM_REGISTRY_UNREACHABLE', phase: 'install', serving: 'v2', hook: 'ABANDON',
      names: /npm ci could not fetch packages \(ECONNREFUSED\)[^]*tiny-1\.0\.0\.tgz/, remedy: /reach the npm registry/,
    })
  })

  t.test('registry slower than --install-timeout (a stalled tarball): NPM_CI_TIMEOUT, ABANDON', async t => {
    registryProxy.fail({ kind: 'stall' })
    await deployCommit(withTiny('v3 stalled', '1.0.4', registryProxy.url('tiny/-/tiny-1.0.0.tgz')))
    const c = await run(t, { 'install-timeout': '4' })
    await failedCleanly(t, c, {
      exit: 1, code: 'NPM_CI_TIMEOUT', phase: 'install', serving: 'v2', hook: 'ABANDON',
      names: /npm ci timed out after 4 s/, remedy: /check the registry is reachable/,
    })
    t.ok(registryProxy.faulted() >= 1, 'the tarball request stalled')
  })

  t.test('registry transient (a 503, then the tarball): npm retries, v3 deployed', async t => {
    const files = withTiny('v3', '1.0.5', registryProxy.url('tiny/-/tiny-1.0.0.tgz'))
    // the install script records who ran it (invariant 5: repo code never runs as root)
    files.pkg = { ...files.pkg, scripts: { postinstall: 'node -e "require(\'fs\').writeFileSync(\'install-uid\', String(process.getuid()))"' } }
    const commit = await deployCommit(files)
    registryProxy.fail({ kind: 'status', status: 503 }, 1)
    const c = await run(t)
    await recovered(t, c, 'v3', commit)
    t.equal(registryProxy.faulted(), 1)
    t.equal(registry.requests('/tiny/-/tiny-1.0.0.tgz'), 1, 'then fetched once')
    t.equal(readFileSync(join(serviceDir, 'current/node_modules/tiny/index.js'), 'utf8'), "module.exports = 'tiny'\n", 'the package is installed')
    t.not(readFileSync(join(serviceDir, 'current/install-uid'), 'utf8'), '0', 'npm ci and its scripts ran as the service user, not root')
  })
})

t.test('PM2', async t => {
  t.test('the daemon is gone (killed): the run starts a new one and the service again', async t => {
    killPm2(root)
    const c = await run(t)
    await recovered(t, c, 'v3')
    t.match(phase('start')?.detail, /started/)
    t.match(pm2List(root), [{ name: 'app', pm2_env: { status: 'online' } }])
  })

  t.test('permanent error (PM2_HOME not writable: pm2 save fails): PM2_FAILED, rolled back, ABANDON', async t => {
    const home = pm2Home(root)
    const owner = statSync(home)
    const files = [home, join(home, 'dump.pm2'), join(home, 'dump.pm2.bak')].filter(f => existsSync(f))
    for (const f of files) chownSync(f, 0, 0)
    t.teardown(() => {
      for (const f of files) chownSync(f, owner.uid, owner.gid)
    })
    // a reload of an unchanged definition needs no save (the dump already holds it): make the
    // ecosystem file newer than the dump, as a run killed between `pm2 start` and `pm2 save` leaves it
    const ecosystem = join(serviceDir, 'ecosystem.json')
    const later = new Date(Date.now() + 5_000)
    utimesSync(ecosystem, later, later)
    const before = current()
    await deployCommit({ greeting: 'v4 unsaved' })
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'PM2_FAILED', phase: 'start', serving: 'v3', hook: 'ABANDON', outcome: 'rolled-back',
      names: /pm2 save failed \(exit 1\): [^\n]*EACCES: permission denied[^\n]*dump\.pm2/, remedy: /pm2 logs/,
    })
    t.equal(current(), before, 'current points at the previous release again')
    t.match(phase('rollback'), { status: 'failed', detail: /pm2 save failed/ }, 'state.json: the rollback reloaded v3 but could not save either')
  })

  t.test('hung (the daemon stopped with SIGSTOP): given up at --pm2-timeout, PM2_FAILED, rolled back, the old processes serve, ABANDON', async t => {
    const daemon = Number(readFileSync(join(pm2Home(root), 'pm2.pid'), 'utf8').trim())
    process.kill(daemon, 'SIGSTOP')
    t.teardown(() => process.kill(daemon, 'SIGCONT'))
    const before = current()
    await deployCommit({ greeting: 'v4 hung' })
    const c = await run(t, {}, PM2_FAST)
    await failedCleanly(t, c, {
      exit: 1, code: 'PM2_FAILED', phase: 'start', serving: 'v3', hook: 'ABANDON', outcome: 'rolled-back',
      names: /pm2 \w+ gave no answer within 2 s \(is the PM2 daemon hung\?\)/, remedy: /pm2\.pid[^\n]*raise --pm2-timeout \(BOOTSTRAP_PM2_TIMEOUT\)/,
    })
    t.equal(current(), before, 'current points at the previous release again')
    t.match(phase('rollback'), { status: 'ok' }, 'nothing was restarted: switching back is all the rollback does')
  })
})

t.test('health endpoint', async t => {
  t.test('unreachable (the release never listens): HEALTH_FAILED, rolled back, ABANDON', async t => {
    const before = current()
    await deployCommit({ greeting: 'v4 deaf', health: 'deaf' })
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'HEALTH_FAILED', phase: 'verify', serving: 'v3', hook: 'ABANDON', outcome: 'rolled-back',
      names: /health check of "app" failed: http:\/\/127\.0\.0\.1:\d+\/health did not answer 200 within 5 s \(last: [^)]*ECONNREFUSED/, remedy: /the previous good release keeps serving/,
    })
    t.equal(current(), before, 'current points at the previous release again')
  })

  t.test('slower than its timeout: HEALTH_FAILED, rolled back, ABANDON', async t => {
    await deployCommit({ greeting: 'v4 slow', health: 'slow' })
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'HEALTH_FAILED', phase: 'verify', serving: 'v3', hook: 'ABANDON', outcome: 'rolled-back',
      names: /health check of "app" failed: [^\n]*did not answer 200 within 5 s \(last: The operation was aborted due to timeout\)/, remedy: /fix the service/,
    })
  })

  t.test('permanent error (500): HEALTH_FAILED, rolled back, ABANDON', async t => {
    await deployCommit({ greeting: 'v4 error', health: 'error' })
    const c = await run(t)
    await failedCleanly(t, c, {
      exit: 1, code: 'HEALTH_FAILED', phase: 'verify', serving: 'v3', hook: 'ABANDON', outcome: 'rolled-back',
      names: /health check of "app" failed: [^\n]*did not answer 200 within 5 s \(last: status 500\)/, remedy: /fix the service/,
    })
  })

  t.test('transient (503 three times while warming up): success, v4 deployed', async t => {
    const commit = await deployCommit({ greeting: 'v4', health: 'flaky' })
    const c = await run(t)
    await recovered(t, c, 'v4', commit)
  })
})

t.test('timings (not asserted)', async t => {
  for (const [name, ms] of timings) t.comment(`${String(ms).padStart(6)} ms  ${name}`)
  t.pass('recorded')
})
