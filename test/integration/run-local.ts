/**
 * The spine end to end, for real: a private repository over smart HTTP with basic auth (the token
 * in the local secrets file), real npm ci, real PM2 as the unprivileged service user, the health
 * gate, and a sequence of runs against one sandbox: first deploy, re-run with no change, a new
 * commit, a release that fails its health check (rollback), a bad manifest, a missing required key.
 * After each run: secret values appear nowhere but the env file and the service.
 */
import t, { type Test } from 'tap'
import { randomBytes, createHash } from 'node:crypto'
import { readFileSync, readlinkSync, statSync, readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { startGitHttpServer } from '../helpers/git-http-server.js'
import { leaksAfterRun } from '../helpers/leak-scan.js'
import { appFiles, freePort, getJson, pm2List, removeSandbox, runCli, sandboxDir, writeSecrets, type CliResult } from '../helpers/sandbox.js'

const dir = sandboxDir('run-local')
const root = join(dir, 'root')
const secretsFile = join(dir, 'secrets.json')
const token = `tok-${randomBytes(16).toString('hex')}`
const apiKey = `key-${randomBytes(16).toString('hex')}\n"quoted" $HOME #hash = back\\slash ünïcode`
const dbPass = `db-${randomBytes(16).toString('hex')}`
const SECRETS = [token, `key-${apiKey.slice(4, 36)}`, dbPass]
const fp = (v: string) => createHash('sha256').update(v).digest('hex')

const port = await freePort()
const repo = await createFixtureRepo({
  root: join(dir, 'git'),
  name: 'app',
  branches: {
    main: appFiles({ port, greeting: 'main' }),
    stage: appFiles({ port, greeting: 'stage v1' }),
  },
})
const server = await startGitHttpServer({ projectRoot: join(dir, 'git'), username: 'deploy', password: token })
t.teardown(async () => {
  await server.stop()
  removeSandbox(dir, root)
})
writeSecrets(secretsFile, {
  secrets: {
    'stage/app': { API_KEY: apiKey },
    'git/app': { username: 'deploy', token },
  },
  parameters: { '/stage/app/db/password': dbPass },
})

const args = [
  'run', '--local', '--root', root, '--json',
  '--tag', 'Service=app', '--tag', 'Environment=stage', '--tag', `Repository=${server.url('app.git')}`,
  '--secrets-file', secretsFile, '--git-credential-secret', 'git/app', '--stable-window', '1',
]
const envFile = join(root, 'etc/bootstrap-agent/env/app.env')
const serviceDir = join(root, 'srv/app')
const url = `http://127.0.0.1:${port}/health`
const state = () => JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8'))
const phase = (name: string) => state().phases.find((p: { name: string }) => p.name === name)
const current = () => readlinkSync(join(serviceDir, 'current'))

const noLeaks = (t: Test, r: CliResult) =>
  t.same(leaksAfterRun(SECRETS, root, envFile, r), [], 'no secret value outside the env file and the service')

t.test('first run deploys the stage branch from a private repository', async t => {
  const r = await runCli(args)
  t.equal(r.code, 0, r.stderr || r.stdout.slice(-3000))
  const body = await getJson(url)
  t.equal(body['greeting'], 'stage v1', 'the stage branch is serving')
  t.equal(body['apiKey'], fp(apiKey), 'the secret reached process.env byte-exact')
  t.not(body['uid'], 0, 'the service does not run as root')
  const st = statSync(envFile)
  t.equal(st.mode & 0o777, 0o600, 'env file 0600')
  t.equal(st.uid, body['uid'], 'env file owned by the service user')
  t.equal(statSync(join(root, 'etc/bootstrap-agent/env')).mode & 0o777, 0o700, 'env dir 0700')
  const s = state()
  t.equal(s.outcome, 'success')
  t.equal(s.commit, await repo.head('stage'))
  t.match(current(), /^releases\/\d{8}T\d{6}Z-[0-9a-f]{12}$/)
  const release = join(serviceDir, current())
  t.notMatch(readFileSync(join(release, '.git/config'), 'utf8'), token, '.git/config holds no token')
  t.equal(statSync(join(release, 'server.js')).uid, body['uid'], 'the release is owned by the service user')
  t.ok(server.requests.some(q => q.authorized), 'the server saw authenticated requests')
  const procs = pm2List(root)
  t.equal(procs.length, 1)
  t.equal(procs[0]?.pm2_env.status, 'online')
  t.ok(existsSync(join(root, 'var/lib/bootstrap-agent/home/.pm2/dump.pm2')), 'pm2 save wrote dump.pm2')
  for (const name of ['identify', 'resolve', 'fetch', 'secrets', 'install', 'build', 'switch', 'start', 'verify', 'complete', 'cleanup']) {
    t.ok(phase(name), `phase ${name} recorded`)
  }
  t.equal(phase('install').detail, 'npm ci')
  const lines = r.stdout.trim().split('\n').map(l => JSON.parse(l))
  t.ok(lines.some(l => l.phase === 'verify' && l.status === 'ok' && typeof l.durationMs === 'number'), 'one JSON line per phase')
  noLeaks(t, r)
})

t.test('a re-run with no change redeploys nothing', async t => {
  const before = await getJson(url)
  const releaseBefore = current()
  const r = await runCli(args)
  t.equal(r.code, 0, r.stderr)
  t.equal(phase('fetch').status, 'skipped')
  t.equal(phase('install').status, 'skipped')
  t.equal(phase('switch').status, 'skipped')
  t.equal(phase('start').status, 'skipped')
  t.equal(current(), releaseBefore)
  t.equal((await getJson(url))['pid'], before['pid'], 'the same process keeps serving')
  noLeaks(t, r)
})

t.test('a new commit deploys a new release and reuses node_modules', async t => {
  const releaseBefore = current()
  await repo.commit('stage', { 'server.js': appFiles({ port, greeting: 'stage v2' })['server.js'] ?? '' })
  const r = await runCli(args)
  t.equal(r.code, 0, r.stderr || r.stdout.slice(-3000))
  t.equal((await getJson(url))['greeting'], 'stage v2')
  t.not(current(), releaseBefore)
  t.match(phase('install').detail, /node_modules reused from/)
  t.equal(state().previousRelease, releaseBefore.replace('releases/', ''))
  // the same PM2 definition, reloaded: no `pm2 save`, and the dump resurrection reads still holds the app
  t.match(phase('start').detail, /reloaded; PM2's dump already holds it/)
  const dump = JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/home/.pm2/dump.pm2'), 'utf8')) as { name: string; pm_cwd?: string }[]
  t.match(dump, [{ name: 'app' }], 'dump.pm2 lists the app')
  noLeaks(t, r)
})

t.test('a release failing its health check is rolled back; the old one keeps serving', async t => {
  const releaseBefore = current()
  await repo.commit('stage', { 'server.js': appFiles({ port, greeting: 'broken', crash: true })['server.js'] ?? '' })
  const r = await runCli([...args, '--health-timeout', '6'])
  t.equal(r.code, 1)
  t.equal(current(), releaseBefore, 'current points at the previous release again')
  t.equal((await getJson(url))['greeting'], 'stage v2', 'the previous release is serving')
  const s = state()
  t.equal(s.outcome, 'rolled-back')
  t.equal(s.error.code, 'HEALTH_FAILED')
  t.match(s.error.message, /fatal: this release cannot start/, 'the failure carries the tail of the service log')
  t.equal(phase('rollback').status, 'ok')
  noLeaks(t, r)
})

t.test('a failing release that moved its port is rolled back onto the previous release\'s own PM2 definition', async t => {
  const releaseBefore = current()
  const ecosystem = join(serviceDir, 'ecosystem.json')
  const ecoBefore = readFileSync(ecosystem, 'utf8')
  const port2 = await freePort()
  await repo.commit('stage', appFiles({ port: port2, greeting: 'moved', crash: true }))
  const r = await runCli([...args, '--health-timeout', '6'])
  t.equal(r.code, 1)
  t.equal(current(), releaseBefore)
  t.equal(readFileSync(ecosystem, 'utf8'), ecoBefore, 'the ecosystem file is the previous release\'s again (PORT and all)')
  t.equal((await getJson(url))['greeting'], 'stage v2', 'the previous release serves on its own port')
  t.match(phase('rollback'), { status: 'ok', detail: /on its own PM2 definition, healthy/ })
  const dump = JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/home/.pm2/dump.pm2'), 'utf8')) as { name: string; env?: Record<string, string> }[]
  t.equal(dump.find(a => a.name === 'app')?.env?.['PORT'], String(port), 'PM2 resurrects it on its own port too')
  noLeaks(t, r)
})

t.test('a bad manifest is exit 2 and changes nothing', async t => {
  const releaseBefore = current()
  await repo.commit('stage', {
    'server.js': appFiles({ port, greeting: 'stage v2' })['server.js'] ?? '',
    'bootstrap-agent.json': JSON.stringify({ version: 1, services: { app: { instances: 'lots' } } }),
  })
  const r = await runCli(args)
  t.equal(r.code, 2)
  t.match(r.stderr, /field "services.app.instances"/)
  t.equal(current(), releaseBefore)
  t.equal((await getJson(url))['greeting'], 'stage v2')
  t.equal(state().outcome, 'failed')
})

t.test('a required key missing from the secrets fails before anything is switched', async t => {
  const releaseBefore = current()
  const envBefore = readFileSync(envFile, 'utf8')
  const files = appFiles({ port, greeting: 'needs more' })
  const manifest = JSON.parse(files['bootstrap-agent.json'] ?? '{}')
  manifest.services.app.requiredEnv = ['API_KEY', 'SMTP_PASSWORD']
  await repo.commit('stage', { ...files, 'bootstrap-agent.json': JSON.stringify(manifest) })
  const r = await runCli(args)
  t.equal(r.code, 2)
  t.match(r.stderr, /SMTP_PASSWORD/)
  t.equal(current(), releaseBefore)
  t.equal(readFileSync(envFile, 'utf8'), envBefore)
  t.equal((await getJson(url))['greeting'], 'stage v2')
  t.equal(phase('switch'), undefined, 'switch never ran')
})

t.test('old releases are pruned to the newest good ones', async t => {
  const releases = readdirSync(join(serviceDir, 'releases'))
  t.ok(releases.includes(current().replace('releases/', '')), 'the live release is kept')
  t.ok(releases.length <= 4, `at most keep(3) good + live on disk, saw ${releases.length}`)
})
