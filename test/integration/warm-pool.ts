/**
 * Warm pools end to end: the real agent CLI in AWS mode against moto (behind the lifecycle proxy)
 * and the IMDSv2 test server, with a file:// repository, real `npm ci` and real PM2.
 *
 * An instance launched into a warm pool has the IMDS target state Warmed:Stopped and waits in
 * Warmed:Pending:Wait on the launching hook: the run prepares everything (clone, env file,
 * `npm ci`, build, `current`), starts nothing and completes the hook with CONTINUE. When the
 * instance leaves the pool (target InService, Pending:Wait) it boots again and the next run only
 * refreshes the secrets, starts, checks health and completes the hook: no clone and no `npm ci`,
 * unless the branch moved while the instance sat in the pool. Each case has its own root (a new
 * instance); between the two runs the PM2 daemon is killed, as the stop of the instance would.
 */
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager'
import { startAwsWorld } from '../helpers/aws-world.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { findLeaks, leaksAfterRun } from '../helpers/leak-scan.js'
import type { LifecycleCall } from '../helpers/lifecycle-proxy.js'
import { appFiles, freePort, getJson, killPm2, pm2Home, pm2List, removeSandbox, runCli, sandboxDir, type CliResult } from '../helpers/sandbox.js'

const dir = sandboxDir('warm-pool')
const roots: string[] = []
t.teardown(() => {
  for (const r of roots) killPm2(r)
  removeSandbox(dir)
})

const world = await startAwsWorld(t)
const { proxy, sm } = world

// -- the app: a file: dependency (so node_modules exists), an install script that counts `npm ci`
// runs, and a build command that leaves an output file

const port = await freePort()
const service = 'app'
const manifest = (build: string[]) => ({
  version: 1,
  services: {
    [service]: {
      start: { script: 'server.js' },
      build,
      env: { PORT: String(port) },
      health: { url: `http://127.0.0.1:${port}/health`, timeoutSeconds: 8 },
      requiredEnv: ['API_KEY'],
    },
  },
})
const GOOD_BUILD = ['node', '-e', "require('fs').writeFileSync('build-output.txt', 'built')"]
const files = (greeting: string, build = GOOD_BUILD): Record<string, string> => appFiles({
  port,
  greeting,
  manifest: manifest(build),
  extra: {
    'package.json': JSON.stringify({
      name: 'app', version: '1.0.0', private: true, main: 'server.js',
      scripts: { start: 'node server.js', postinstall: "node -e \"require('fs').appendFileSync('installs.log', 'npm ci\\n')\"" },
      dependencies: { greet: 'file:lib/greet' },
    }, null, 2),
    'package-lock.json': JSON.stringify({
      name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true,
      packages: {
        '': { name: 'app', version: '1.0.0', hasInstallScript: true, dependencies: { greet: 'file:lib/greet' } },
        'lib/greet': { name: 'greet', version: '1.0.0' },
        'node_modules/greet': { resolved: 'lib/greet', link: true },
      },
    }, null, 2),
    'lib/greet/package.json': JSON.stringify({ name: 'greet', version: '1.0.0', main: 'index.js' }),
    'lib/greet/index.js': "module.exports = 'hello'\n",
  },
})
const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: files('stage v1') } })

// -- moto: the secret, a group with one member and its launching hook

const secretId = `stage/${service}`
const newKey = () => `key-${randomBytes(16).toString('hex')}\n"q" $HOME #h = back\\slash`
let apiKey = newKey()
const SECRETS = [apiKey]
const setApiKey = async (v: string, create = false) => {
  apiKey = v
  SECRETS.push(v)
  const SecretString = JSON.stringify({ API_KEY: v })
  if (create) await sm.send(new CreateSecretCommand({ Name: secretId, SecretString }))
  else await sm.send(new PutSecretValueCommand({ SecretId: secretId, SecretString }))
}
await setApiKey(apiKey, true)
const fp = (v: string) => createHash('sha256').update(v).digest('hex')

const hookName = 'bootstrap-launch'
const { asgName, instanceId } = await world.createGroup({ hooks: [{ name: hookName }] })

const imds = await world.startImds({ instanceId, tags: { Service: service, Environment: 'stage', Repository: repo.fileUrl } })

const ENV = world.agentEnv(imds.endpoint, { BOOTSTRAP_CONFIG_PARAMETER: 'none' })

// -- lifecycle: launched into the pool, then out of it

/** Launched into a Warmed:Stopped pool: waiting in Warmed:Pending:Wait on the launching hook. */
const launchIntoPool = () => {
  imds.set({ lifecycleState: 'Warmed:Stopped' })
  proxy.setActive([{ instanceId, hookName, state: 'Warmed:Pending:Wait' }])
}
/** The instance was stopped in the pool (its processes are gone) and now starts to go InService. */
const leavePool = (root: string) => {
  killPm2(root)
  imds.set({ lifecycleState: 'InService' })
  proxy.setActive([{ instanceId, hookName }])
}

// -- per instance (root) helpers

const newRoot = (name: string) => {
  const root = join(dir, name)
  roots.push(root)
  return root
}
const run = (root: string): Promise<CliResult> =>
  runCli(['run', '--reason', 'boot', '--root', root, '--json', '--stable-window', '1', '--heartbeat-interval', '1'], ENV)
const envFileOf = (root: string) => join(root, `etc/bootstrap-agent/env/${service}.env`)
const serviceDirOf = (root: string) => join(root, `srv/${service}`)
const currentOf = (root: string) => readlinkSync(join(serviceDirOf(root), 'current'))
const releaseDirOf = (root: string) => join(serviceDirOf(root), currentOf(root))

interface StateJson {
  outcome: string
  exitCode?: number
  commit?: string
  release?: string
  url?: string
  warmPool?: string
  lifecycle?: string
  phases: { name: string; status: string; detail?: string }[]
  error?: { code: string }
}
const stateOf = (root: string): StateJson => JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8')) as StateJson
const phaseOf = (root: string, name: string) => stateOf(root).phases.find(p => p.name === name)

const completionsSince = (before: number): LifecycleCall[] => proxy.calls.slice(before).filter(c => c.action === 'CompleteLifecycleAction')
const exits = (t: Test, r: CliResult, code: number) =>
  t.equal(r.code, code, `exit ${code}`, r.code === code ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-6000) })

/** PM2 apps of the sandbox; no PM2_HOME at all means no daemon ever ran, so none. */
const appsOf = (root: string) => (existsSync(pm2Home(root)) ? pm2List(root).filter(p => p.name === service) : [])

const listening = (p: number): Promise<boolean> =>
  new Promise(resolve => {
    const s = connect({ port: p, host: '127.0.0.1' })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })

const noLeaks = (t: Test, root: string, r: CliResult) => {
  // leaksAfterRun asks PM2 too; without a PM2_HOME there is no PM2 to ask
  const found = existsSync(pm2Home(root))
    ? leaksAfterRun(SECRETS, root, envFileOf(root), r)
    : findLeaks(SECRETS, { root, allow: [envFileOf(root)], texts: { stdout: r.stdout, stderr: r.stderr }, cmdlines: r.cmdlines })
  t.same(found, [], 'no secret value outside the env file and the service')
}

const serviceUid = Number(spawnSync('id', ['-u', 'bootstrap-app'], { encoding: 'utf8' }).stdout.trim() || 'NaN')

/** The warm-pool boot of a new instance, with every check of "prepared, nothing started". */
const warmPrepare = async (t: Test, root: string): Promise<string> => {
  launchIntoPool()
  const plan = await runCli(['plan', '--root', root, '--json'], ENV)
  exits(t, plan, 0)
  t.match((JSON.parse(plan.stdout) as { action: string }).action, /; warm pool \(Warmed:Stopped\): prepare only, start nothing$/, 'plan says the run only prepares')
  const before = proxy.calls.length
  const r = await run(root)
  exits(t, r, 0)
  const release = releaseDirOf(root)
  t.ok(existsSync(join(release, 'node_modules/greet')), 'the release has its node_modules')
  t.equal(readFileSync(join(release, 'installs.log'), 'utf8'), 'npm ci\n', 'npm ci ran once')
  t.equal(readFileSync(join(release, 'build-output.txt'), 'utf8'), 'built', 'the build ran')
  const env = envFileOf(root)
  t.match(readFileSync(env, 'utf8'), /^API_KEY=/m, 'the env file holds the secret')
  t.equal(statSync(env).mode & 0o777, 0o600, 'env file 0600')
  if (Number.isInteger(serviceUid) && process.getuid?.() === 0) t.equal(statSync(env).uid, serviceUid, 'owned by the service user')
  t.same(appsOf(root), [], 'no PM2 app')
  t.notOk(await listening(port), `nothing listens on port ${port}`)
  t.match(completionsSince(before), [{ instanceId, hookName, asgName, result: 'CONTINUE', status: 200 }], 'the launching hook: CONTINUE')
  t.equal(completionsSince(before).length, 1, 'exactly one completion')
  const s = stateOf(root)
  t.equal(s.outcome, 'prepared')
  t.equal(s.warmPool, 'Warmed:Stopped')
  t.equal(s.url, undefined, 'no URL: nothing serves')
  t.match(s.lifecycle, /\(Warmed:Pending:Wait\)/)
  t.match(phaseOf(root, 'start'), { status: 'skipped', detail: 'warm pool: prepared, not started' })
  t.match(phaseOf(root, 'verify'), { status: 'skipped', detail: 'warm pool: prepared, not started' })
  t.match(phaseOf(root, 'complete'), { status: 'ok', detail: /CONTINUE sent/ })
  noLeaks(t, root, r)
  return currentOf(root)
}

/** The run out of the pool: one more CONTINUE, the app online and healthy. */
const inService = async (t: Test, root: string): Promise<CliResult> => {
  leavePool(root)
  const before = proxy.calls.length
  const r = await run(root)
  exits(t, r, 0)
  t.match(completionsSince(before), [{ instanceId, hookName, asgName, result: 'CONTINUE', status: 200 }], 'the launching hook: CONTINUE')
  t.equal(completionsSince(before).length, 1, 'exactly one more completion')
  t.match(appsOf(root), [{ name: service, pm2_env: { status: 'online' } }], 'the app is online')
  const s = stateOf(root)
  t.equal(s.outcome, 'success')
  t.equal(s.warmPool, undefined)
  t.match(s.lifecycle, /\(Pending:Wait\)/)
  t.notOk(existsSync(join(serviceDirOf(root), '.warm-prepared')), 'the prepared marker is gone once healthy')
  return r
}

t.test('a warm-pool boot prepares without starting; leaving the pool only starts', async t => {
  const root = newRoot('instance-a')
  const prepared = await warmPrepare(t, root)

  const text = await runCli(['status', '--root', root], ENV)
  t.match(text.stdout, /outcome\s+prepared \(exit 0\)/, 'status: prepared')
  t.match(text.stdout, /warm pool\s+Warmed:Stopped: prepared, not started/, 'status: not started')
  t.notMatch(text.stdout, /\n\s+url\s/, 'status names no URL')
  const json = JSON.parse((await runCli(['status', '--root', root, '--json'], ENV)).stdout) as { state: StateJson }
  t.equal(json.state.outcome, 'prepared')

  const r = await inService(t, root)
  t.equal(currentOf(root), prepared, 'the prepared release is the one serving')
  t.equal(readFileSync(join(releaseDirOf(root), 'installs.log'), 'utf8'), 'npm ci\n', 'npm ci did not run again')
  t.match(phaseOf(root, 'fetch'), { status: 'skipped', detail: /already prepared \(warm pool\)/ })
  t.match(phaseOf(root, 'install'), { status: 'skipped' })
  t.match(phaseOf(root, 'build'), { status: 'skipped' })
  t.match(phaseOf(root, 'start'), { status: 'ok', detail: /started/ })
  const body = await getJson(`http://127.0.0.1:${port}/health`)
  t.equal(body['greeting'], 'stage v1')
  t.equal(body['apiKey'], fp(apiKey), 'the secret reached the service')
  t.equal(stateOf(root).url, `http://127.0.0.1:${port}/health`)
  noLeaks(t, root, r)
  killPm2(root)
})

t.test('a secret changed while warm: the env file is rewritten before the start', async t => {
  const root = newRoot('instance-b')
  const prepared = await warmPrepare(t, root)
  const old = readFileSync(envFileOf(root), 'utf8')
  await setApiKey(newKey())
  const r = await inService(t, root)
  t.not(readFileSync(envFileOf(root), 'utf8'), old, 'the env file changed')
  t.equal(statSync(envFileOf(root)).mode & 0o777, 0o600)
  t.match(phaseOf(root, 'switch'), { status: 'ok', detail: /env file replaced/ })
  t.equal(currentOf(root), prepared, 'same release')
  t.equal(readFileSync(join(releaseDirOf(root), 'installs.log'), 'utf8'), 'npm ci\n', 'npm ci did not run again')
  t.equal((await getJson(`http://127.0.0.1:${port}/health`))['apiKey'], fp(apiKey), 'the service started with the new value')
  noLeaks(t, root, r)
  killPm2(root)
})

t.test('a commit pushed while warm: the new commit is what serves', async t => {
  const root = newRoot('instance-c')
  const prepared = await warmPrepare(t, root)
  const head = await repo.commit('stage', { 'server.js': files('stage v2')['server.js'] ?? '' })
  const r = await inService(t, root)
  t.not(currentOf(root), prepared, 'a new release')
  t.equal(stateOf(root).commit, head)
  t.match(phaseOf(root, 'fetch'), { status: 'ok', detail: /cloned stage @/ })
  t.equal((await getJson(`http://127.0.0.1:${port}/health`))['greeting'], 'stage v2')
  noLeaks(t, root, r)
  killPm2(root)
})

t.test('a failure during the warm prepare: ABANDON, nothing started', async t => {
  await repo.commit('stage', { 'bootstrap-agent.json': JSON.stringify(manifest(['node', '-e', 'process.exit(3)'])) })
  const root = newRoot('instance-d')
  launchIntoPool()
  const before = proxy.calls.length
  const r = await run(root)
  exits(t, r, 1)
  t.match(r.stderr, /\[BUILD_FAILED\]/)
  t.match(completionsSince(before), [{ instanceId, hookName, asgName, result: 'ABANDON', status: 200 }], 'the launching hook: ABANDON')
  t.equal(completionsSince(before).length, 1, 'exactly one completion')
  t.notOk(existsSync(join(serviceDirOf(root), 'current')), 'no current release')
  t.same(appsOf(root), [], 'no PM2 app')
  t.notOk(await listening(port), 'nothing listens')
  const s = stateOf(root)
  t.equal(s.outcome, 'failed')
  t.equal(s.warmPool, 'Warmed:Stopped')
  const text = await runCli(['status', '--root', root], ENV)
  t.match(text.stdout, /warm pool\s+Warmed:Stopped: prepare failed, nothing started/)
  noLeaks(t, root, r)
})
