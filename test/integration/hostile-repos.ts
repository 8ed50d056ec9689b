/**
 * Hostile repositories (issue 5): every way an application repository can be broken, deployed
 * for real over a release that is live and serving. One sandbox: a private repository over smart
 * HTTP with basic auth (git http-backend), a first good deploy (real npm ci, real PM2, the health
 * gate), then one broken repository per case. Each case checks the exit code (2: the repository
 * or configuration must be fixed; 1: an operational failure), that stderr names the bad value,
 * what was expected and what to do, that state.json records the failure, that nothing changed
 * (`current`, the env file, the releases on disk, the same PM2 process serving the old content)
 * and that no secret leaked. Two first-boot cases (no release yet) check that no `current` is made.
 */
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { startGitHttpServer } from '../helpers/git-http-server.js'
import { findLeaks, leaksAfterRun } from '../helpers/leak-scan.js'
import { appFiles, freePort, getJson, pm2List, removeSandbox, runCli, sandboxDir, writeSecrets, type CliResult } from '../helpers/sandbox.js'

const dir = sandboxDir('hostile-repos')
const root = join(dir, 'root')
const secretsFile = join(dir, 'secrets.json')
const token = `tok-${randomBytes(16).toString('hex')}`
const apiKey = `key-${randomBytes(16).toString('hex')}`
const SECRETS = [token, apiKey]

const port = await freePort()
const projectRoot = join(dir, 'git')
const good = appFiles({ port, greeting: 'v1' })
const repo = await createFixtureRepo({ root: projectRoot, name: 'app', branches: { stage: good, test: good } })
await createFixtureRepo({ root: projectRoot, name: 'empty', branches: {} })
const server = await startGitHttpServer({ projectRoot, username: 'deploy', password: token })
t.teardown(async () => {
  await server.stop()
  removeSandbox(dir, root)
})
writeSecrets(secretsFile, { secrets: { 'stage/app': { API_KEY: apiKey }, 'prod/app': { API_KEY: apiKey }, 'git/app': { username: 'deploy', token } } })

const repoUrl = server.url('app.git')
const args = (o: { root?: string; repository?: string; environment?: string } = {}) => [
  'run', '--local', '--root', o.root ?? root, '--json',
  '--tag', 'Service=app', '--tag', `Environment=${o.environment ?? 'stage'}`, '--tag', `Repository=${o.repository ?? repoUrl}`,
  '--secrets-file', secretsFile, '--git-credential-secret', 'git/app',
  '--stable-window', '1', '--health-timeout', '10', '--git-attempts', '1',
]
const envFileOf = (r: string) => join(r, 'etc/bootstrap-agent/env/app.env')
const envFile = envFileOf(root)
const serviceDir = join(root, 'srv/app')
const healthUrl = `http://127.0.0.1:${port}/health`
const current = () => readlinkSync(join(serviceDir, 'current'))
const releases = () => readdirSync(join(serviceDir, 'releases')).sort()

interface StateJson {
  outcome: string
  exitCode?: number
  commit?: string
  phases: { name: string; status: string }[]
  error?: { code: string; message: string; remedy: string; phase?: string }
}
const stateOf = (r: string): StateJson => JSON.parse(readFileSync(join(r, 'var/lib/bootstrap-agent/state.json'), 'utf8')) as StateJson

// ---------------------------------------------------------------------------------------------
// breaking the repository: whole trees committed with git plumbing (files can disappear too)

const bare = repo.bareDir
const gitEnv = {
  PATH: process.env['PATH'] ?? '/usr/bin:/bin',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'Fixture', GIT_AUTHOR_EMAIL: 'fixture@example.invalid',
  GIT_COMMITTER_NAME: 'Fixture', GIT_COMMITTER_EMAIL: 'fixture@example.invalid',
}
const git = (args: string[], o: { input?: string; env?: Record<string, string> } = {}) =>
  execFileSync('git', args, { cwd: projectRoot, env: { ...gitEnv, GIT_DIR: bare, ...o.env }, encoding: 'utf8', input: o.input ?? '' }).trim()

/** One commit on `stage` holding exactly `files` (anything else is gone); returns its SHA. */
const commitTree = (files: Record<string, string>, message: string): string => {
  const index = join(dir, `index-${randomBytes(4).toString('hex')}`)
  try {
    for (const [path, content] of Object.entries(files)) {
      const blob = git(['hash-object', '-w', '--stdin'], { input: content })
      git(['update-index', '--add', '--cacheinfo', `100644,${blob},${path}`], { env: { GIT_INDEX_FILE: index } })
    }
    const tree = git(['write-tree'], { env: { GIT_INDEX_FILE: index } })
    const commit = git(['commit-tree', tree, '-p', 'refs/heads/stage', '-m', message])
    git(['update-ref', 'refs/heads/stage', commit])
    return commit
  } finally {
    rmSync(index, { force: true })
  }
}
const without = (files: Record<string, string>, name: string) => Object.fromEntries(Object.entries(files).filter(([k]) => k !== name))

// ---------------------------------------------------------------------------------------------

const noLeaks = (t: Test, r: CliResult) =>
  t.same(leaksAfterRun(SECRETS, root, envFile, r), [], 'no secret value outside the env file')

interface Live { current: string; releases: string[]; env: string; pid: unknown }
let live: Live

const snapshot = async (): Promise<Live> =>
  ({ current: current(), releases: releases(), env: readFileSync(envFile, 'utf8'), pid: (await getJson(healthUrl))['pid'] })

interface Expect {
  exit: 1 | 2
  code: string
  phase: string
  /** what stderr's message must say: the bad value and what was expected */
  says: RegExp[]
  /** what the remedy line must say */
  remedy: RegExp
}

/** The run failed as expected, and the release that was live before still is, untouched. */
const failedCleanly = async (t: Test, r: CliResult, e: Expect) => {
  t.equal(r.code, e.exit, `exit ${e.exit}`, r.code === e.exit ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-4000) })
  t.match(r.stderr, `[${e.code}]`, `stderr has the error code ${e.code}`)
  const [message = '', remedy = ''] = r.stderr.split('\n  what to do: ')
  for (const re of e.says) t.match(message, re, `the message says ${re}`)
  t.match(remedy, e.remedy, 'the remedy fits')
  const s = stateOf(root)
  t.equal(s.outcome, 'failed', 'state.json: outcome failed')
  t.equal(s.exitCode, e.exit, 'state.json: exit code')
  t.match(s.error, { code: e.code, phase: e.phase }, `state.json: ${e.code} in ${e.phase}`)
  t.equal(s.phases.find(p => p.name === e.phase)?.status, 'failed', `state.json: ${e.phase} failed`)
  t.equal(s.phases.find(p => p.name === 'switch'), undefined, 'state.json: switch never ran')
  t.equal(current(), live.current, '`current` unchanged')
  t.same(releases(), live.releases, 'no release left behind')
  t.equal(readFileSync(envFile, 'utf8'), live.env, 'env file unchanged')
  const procs = pm2List(root)
  t.match(procs, [{ name: 'app', pm2_env: { status: 'online' } }], 'the PM2 app is online')
  const body = await getJson(healthUrl)
  t.equal(body['greeting'], 'v1', 'the previous release still answers')
  t.equal(body['pid'], live.pid, 'by the same process: nothing was restarted')
  noLeaks(t, r)
}

t.test('a first good deploy: v1 is live and serving', async t => {
  const r = await runCli(args())
  t.equal(r.code, 0, r.stderr || r.stdout.slice(-3000))
  t.equal((await getJson(healthUrl))['greeting'], 'v1')
  t.equal(stateOf(root).outcome, 'success')
  live = await snapshot()
  noLeaks(t, r)
})

t.test('(a) the branch was deleted from the repository: exit 2, GIT_BRANCH_NOT_FOUND', async t => {
  const head = await repo.head('stage')
  git(['update-ref', '-d', 'refs/heads/stage'])
  t.teardown(() => git(['update-ref', 'refs/heads/stage', head]))
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 2, code: 'GIT_BRANCH_NOT_FOUND', phase: 'fetch',
    says: [/branch "stage" \(from environment "stage" in the branch map\)/, new RegExp(repoUrl), /its branches are "test"/],
    remedy: /push the branch/,
  })
})

t.test('(b) the repository is empty (no commits at all): exit 2', async t => {
  renameSync(bare, `${bare}.moved`)
  execFileSync('git', ['init', '--quiet', '--bare', bare], { env: gitEnv })
  t.teardown(() => {
    rmSync(bare, { recursive: true, force: true })
    renameSync(`${bare}.moved`, bare)
  })
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 2, code: 'GIT_REPO_EMPTY', phase: 'fetch',
    says: [/empty/, new RegExp(repoUrl)],
    remedy: /push/,
  })
})

t.test('(c) no package-lock.json: exit 2, LOCKFILE_MISSING', async t => {
  commitTree(without(good, 'package-lock.json'), 'no lockfile')
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 2, code: 'LOCKFILE_MISSING', phase: 'install',
    says: [/package-lock\.json/],
    remedy: /commit package-lock\.json/,
  })
})

t.test('(d) an unparseable package-lock.json: exit 2, LOCKFILE_INVALID', async t => {
  commitTree({ ...good, 'package-lock.json': '{ "name": "app", "lockfileVersion": 3, "packages": {\n' }, 'truncated lockfile')
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 2, code: 'LOCKFILE_INVALID', phase: 'install',
    says: [/package-lock\.json/, /not valid JSON/],
    remedy: /npm install/,
  })
})

t.test('(e) package.json gained a dependency the lockfile does not have: exit 2, LOCKFILE_OUT_OF_SYNC', async t => {
  const pkg = JSON.parse(good['package.json'] ?? '{}') as Record<string, unknown>
  commitTree({
    ...good,
    'package.json': JSON.stringify({ ...pkg, dependencies: { tiny: 'file:./vendor/tiny' } }, null, 2),
    'vendor/tiny/package.json': JSON.stringify({ name: 'tiny', version: '1.0.0' }),
  }, 'a dependency without npm install')
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 2, code: 'LOCKFILE_OUT_OF_SYNC', phase: 'install',
    says: [/package\.json and package-lock\.json/, /tiny/],
    remedy: /npm install/,
  })
})

t.test('(f) the manifest was removed from the repository: exit 2, MANIFEST_MISSING', async t => {
  commitTree(without(good, 'bootstrap-agent.json'), 'manifest removed')
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 2, code: 'MANIFEST_MISSING', phase: 'fetch',
    says: [/bootstrap-agent\.json/],
    remedy: /bootstrap-agent\.json/,
  })
})

t.test('(g) the repository URL does not exist (404): exit 2, GIT_REPO_NOT_FOUND', async t => {
  const missing = server.url('no-such-app.git')
  const r = await runCli(args({ repository: missing }))
  await failedCleanly(t, r, {
    exit: 2, code: 'GIT_REPO_NOT_FOUND', phase: 'fetch',
    says: [new RegExp(missing)],
    remedy: /repository URL/,
  })
})

t.test('(h) an unparseable package.json: exit 2, PACKAGE_JSON_INVALID', async t => {
  commitTree({ ...good, 'package.json': '{ "name": "app", ' }, 'broken package.json')
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 2, code: 'PACKAGE_JSON_INVALID', phase: 'fetch',
    says: [/package\.json/, /not valid JSON/],
    remedy: /package\.json/,
  })
})

t.test('(i) an install script that fails: exit 1, NPM_CI_FAILED', async t => {
  const pkg = JSON.parse(good['package.json'] ?? '{}') as Record<string, unknown>
  commitTree({ ...good, 'package.json': JSON.stringify({ ...pkg, scripts: { postinstall: 'node -e "process.exit(3)"' } }, null, 2) }, 'failing postinstall')
  const r = await runCli(args())
  await failedCleanly(t, r, {
    exit: 1, code: 'NPM_CI_FAILED', phase: 'install',
    says: [/npm ci failed \(exit 3\)/, /command sh -c node -e "process\.exit\(3\)"/],
    remedy: /npm ci/,
  })
})

t.test('the repository fixed again: the next run deploys it', async t => {
  const commit = commitTree({ ...good, 'server.js': appFiles({ port, greeting: 'v2' })['server.js'] ?? '' }, 'fixed')
  const r = await runCli(args())
  t.equal(r.code, 0, r.stderr || r.stdout.slice(-3000))
  t.equal((await getJson(healthUrl))['greeting'], 'v2')
  t.equal(stateOf(root).commit, commit)
  noLeaks(t, r)
})

// ---------------------------------------------------------------------------------------------
// first boot: nothing live yet, nothing may be created that looks live

t.test('first boot', async t => {
  const firstBoot = async (t: Test, o: { repository?: string; environment?: string }, e: Omit<Expect, 'phase'>) => {
    const fresh = join(dir, `first-${randomBytes(4).toString('hex')}`)
    const r = await runCli(args({ root: fresh, ...o }))
    t.equal(r.code, e.exit, `exit ${e.exit}`, r.code === e.exit ? {} : { stderr: r.stderr })
      t.match(r.stderr, `[${e.code}]`)
    const [message = '', remedy = ''] = r.stderr.split('\n  what to do: ')
    for (const re of e.says) t.match(message, re, `the message says ${re}`)
    t.match(remedy, e.remedy, 'the remedy fits')
    t.notOk(existsSync(join(fresh, 'srv/app/current')), 'no `current`')
    t.same(readdirSync(join(fresh, 'srv/app/releases')), [], 'no release')
    t.notOk(existsSync(envFileOf(fresh)), 'no env file')
    t.match(stateOf(fresh), { outcome: 'failed', exitCode: e.exit, error: { code: e.code, phase: 'fetch' } }, 'state.json records the failure')
    // no PM2 was ever started here: the files, the output and the command lines
    t.same(findLeaks(SECRETS, { root: fresh, allow: [], texts: { stdout: r.stdout, stderr: r.stderr }, cmdlines: r.cmdlines }), [], 'no secret value leaked')
  }

  t.test('an empty repository: exit 2', t =>
    firstBoot(t, { repository: server.url('empty.git') }, {
      exit: 2, code: 'GIT_REPO_EMPTY', says: [/empty/, /empty\.git/], remedy: /push/,
    }))

  t.test('the mapped branch does not exist (prod -> main): exit 2', t =>
    firstBoot(t, { environment: 'prod' }, {
      exit: 2, code: 'GIT_BRANCH_NOT_FOUND', says: [/branch "main"/, /app\.git/, /prod/, /stage/], remedy: /push the branch/,
    }))
})
