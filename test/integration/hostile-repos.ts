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
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { startGitHttpServer } from '../helpers/git-http-server.js'
import { findLeaks, leaksAfterRun } from '../helpers/leak-scan.js'
import { appFiles, freePort, getJson, pm2, pm2List, removeSandbox, runCli, sandboxDir, writeSecrets, type CliResult } from '../helpers/sandbox.js'
import { asService, canarySeen, changes, fifoAsService, hardLinkCanary, makeOutside, serviceUserOf, snapshot, snapshotDirs } from '../helpers/boundary.js'
import { installKey } from '../../agent/src/releases/install.js'

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

/** One commit on `stage` holding exactly `files` (anything else is gone) and `links` (symbolic
 * links, path -> target, as git stores them); returns its SHA. */
const commitTree = (files: Record<string, string>, message: string, links: Record<string, string> = {}): string => {
  const index = join(dir, `index-${randomBytes(4).toString('hex')}`)
  try {
    const entries = [...Object.entries(files).map(([p, c]) => [p, c, '100644']), ...Object.entries(links).map(([p, c]) => [p, c, '120000'])]
    for (const [path = '', content = '', mode] of entries) {
      const blob = git(['hash-object', '-w', '--stdin'], { input: content })
      git(['update-index', '--add', '--cacheinfo', `${mode},${blob},${path}`], { env: { GIT_INDEX_FILE: index } })
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

interface Live { current: string; releases: string[]; env: string; pid: unknown; greeting: unknown }
let live: Live

const liveNow = async (): Promise<Live> => {
  const body = await getJson(healthUrl)
  return { current: current(), releases: releases(), env: readFileSync(envFile, 'utf8'), pid: body['pid'], greeting: body['greeting'] }
}

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
  t.equal(body['greeting'], live.greeting, 'the previous release still answers')
  t.equal(body['pid'], live.pid, 'by the same process: nothing was restarted')
  noLeaks(t, r)
}

t.test('a first good deploy: v1 is live and serving', async t => {
  const r = await runCli(args())
  t.equal(r.code, 0, r.stderr || r.stdout.slice(-3000))
  t.equal((await getJson(healthUrl))['greeting'], 'v1')
  t.equal(stateOf(root).outcome, 'success')
  live = await liveNow()
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

// ---------------------------------------------------------------------------------------------
// the line between root and the service user (issue 16): repository code and the service run as
// the service user and can write its logs, its releases, PM2_HOME and the env file's directory.
// Each case plants what a malicious commit (install scripts, committed links) or a compromised
// service (as its user, while it runs) could, then asserts: no root-only canary in any output,
// log, state file or error; nothing outside the service's own directories changed owner, mode or
// content; the run ends (nothing waits on a FIFO); no forged record is believed.

t.test('the boundary between root and the service user', async t => {
  const outside = makeOutside(dir)
  const logsDir = join(serviceDir, 'logs')
  const user = serviceUserOf(join(serviceDir, 'releases'))
  const stateDir = join(root, 'var/lib/bootstrap-agent')
  const rootDirs = [serviceDir, stateDir, join(stateDir, 'releases/app'), join(root, 'etc/bootstrap-agent'), join(root, 'var/log/bootstrap-agent')]
  const outsideBefore = snapshot([outside.dir])
  const rootDirsBefore = snapshotDirs(rootDirs)
  const serving = (greeting: string, version = '1.0.0') => {
    const f = appFiles({ port, greeting })
    return {
      ...f,
      'package.json': (f['package.json'] ?? '').replace('"1.0.0"', `"${version}"`),
      'package-lock.json': (f['package-lock.json'] ?? '').replaceAll('"1.0.0"', `"${version}"`),
    }
  }
  const crashing = appFiles({ port, greeting: 'never', crash: true })
  const ok = async (t: Test, r: CliResult, greeting: string) => {
    t.equal(r.code, 0, 'exit 0', r.code === 0 ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-3000) })
    t.equal((await getJson(healthUrl))['greeting'], greeting, `${greeting} serves`)
  }

  /** what every case asserts, whatever the service did */
  const held = (t: Test, r: CliResult) => {
    t.same(canarySeen(outside, root, { stdout: r.stdout, stderr: r.stderr, 'pm2 jlist': pm2(root, ['jlist']) }), [], 'the root-only canary is in no output, log, state file or error')
    t.same(changes(outsideBefore, snapshot([outside.dir])), [], 'nothing outside the service\'s directories changed owner, mode or content')
    t.same(changes(rootDirsBefore, snapshotDirs(rootDirs)), [], 'root\'s own directories are still root\'s, with their modes')
    t.equal(statSync(join(stateDir, 'state.json')).mode & 0o777, 0o644, 'state.json 0644: it holds nothing the service may not read')
    t.equal(statSync(join(root, 'var/log/bootstrap-agent/agent.log')).mode & 0o777, 0o640, 'agent.log 0640: root and its group')
    noLeaks(t, r)
  }

  t.test('a good deploy to start from', async t => {
    commitTree(serving('b1'), 'b1')
    await ok(t, await runCli(args()), 'b1')
    live = await liveNow()
  })

  t.test('(j) a commit whose manifest, package.json, lockfile or .npmrc is a link to a root-only file: refused unread, exit 2, nothing changed', async t => {
    for (const name of ['bootstrap-agent.json', 'package.json', 'package-lock.json', '.npmrc']) {
      commitTree(without(serving('b1'), name), `${name} is a link`, { [name]: outside.canary })
      const r = await runCli(args())
      await failedCleanly(t, r, {
        exit: 2, code: 'UNTRUSTED_PATH_REFUSED', phase: name === 'package-lock.json' || name === '.npmrc' ? 'install' : 'fetch',
        says: [new RegExp(`${name.replace('.', '\\.')}: it is a symbolic link`)],
        remedy: /commit the file itself/,
      })
      held(t, r)
    }
  })

  t.test('(k) the service forges the record earlier agents kept in its release: the next run believes root\'s own', async t => {
    const liveId = current().replace('releases/', '')
    const liveDir = join(serviceDir, 'releases', liveId)
    // the next commit, and a forged record claiming it is already live and good, installed from
    // its lockfile (so its node_modules, with what the service put there, would be reused)
    const next = serving('b2', '1.0.1')
    const commit = commitTree(next, 'b2')
    const forged = { id: liveId, commit, branch: 'stage', createdAt: new Date().toISOString(), good: true, installKey: installKey({ lockfile: next['package-lock.json'] ?? '', packageJson: next['package.json'] ?? '' }) }
    // (root wrote it there, but the directory is the service user's: it replaces the file)
    asService(user, 'rm', ['-f', join(liveDir, '.bootstrap-release.json')])
    asService(user, 'tee', [join(liveDir, '.bootstrap-release.json')], JSON.stringify(forged))
    asService(user, 'mkdir', ['-p', join(liveDir, 'node_modules/planted-by-the-service')])
    const r = await runCli(args())
    await ok(t, r, 'b2')
    t.not(current(), `releases/${liveId}`, 'a new release: the forged commit was not believed')
    t.match(stateOf(root).phases.find(p => p.name === 'install'), { status: 'ok' }, 'npm ci ran: no node_modules reused on the forged install key')
    t.notOk(existsSync(join(serviceDir, current(), 'node_modules/planted-by-the-service')), 'nothing of the forged release came along')
    held(t, r)
    live = await liveNow()
  })

  t.test('(l) the service replaces its env file with a FIFO before a re-run: nothing waits on it, a real env file is put back', async t => {
    const envBefore = readFileSync(envFile, 'utf8')
    asService(user, 'rm', [envFile])
    fifoAsService(user, envFile)
    const r = await runCli(args())
    await ok(t, r, 'b2')
    t.match(r.stdout, /the env file in place is not one the agent wrote \(it is a FIFO\)/)
    t.ok(lstatSync(envFile).isFile(), 'a regular file again')
    t.equal(readFileSync(envFile, 'utf8'), envBefore, 'with the secrets')
    t.equal((await getJson(healthUrl))['apiKey'], createHash('sha256').update(apiKey).digest('hex'), 'the service has them')
    held(t, r)
  })

  t.test('(m) the env file is a hard link to a root-only file when a deploy fails: the rollback restores nothing it read there', async t => {
    hardLinkCanary(outside, envFile)
    commitTree(crashing, 'crashes at start')
    const r = await runCli(args())
    t.equal(r.code, 1, 'exit 1', r.code === 1 ? {} : { stderr: r.stderr })
    t.match(r.stderr, '[HEALTH_FAILED]')
    t.equal(stateOf(root).outcome, 'rolled-back')
    t.notMatch(readFileSync(envFile, 'utf8'), outside.value, 'the env file holds the secrets, not the canary')
    t.not(statSync(envFile).ino, statSync(outside.canary).ino, 'no longer the canary\'s inode')
    t.equal((await getJson(healthUrl))['greeting'], 'b2', 'the previous release serves again')
    held(t, r)
  })

  t.test('(n) an install script replaces the service logs with links to a root-only file, and the release crashes: the health error names them, reads nothing', async t => {
    t.teardown(() => {
      for (const f of ['app-error.log', 'app-out.log']) rmSync(join(logsDir, f), { force: true })
    })
    const pkg = JSON.parse(crashing['package.json'] ?? '{}') as { scripts: Record<string, string> }
    pkg.scripts['postinstall'] = `ln -sf ${outside.canary} ../../logs/app-error.log && ln -sf ${outside.canary} ../../logs/app-out.log`
    commitTree({ ...crashing, 'package.json': JSON.stringify(pkg, null, 2) }, 'plants links to the canary as its logs')
    const r = await runCli(args())
    t.equal(r.code, 1, 'exit 1', r.code === 1 ? {} : { stderr: r.stderr })
    t.match(r.stderr, '[HEALTH_FAILED]')
    t.match(r.stderr, `--- ${join(logsDir, 'app-error.log')} not read: it is a symbolic link`)
    t.match(r.stderr, `--- ${join(logsDir, 'app-out.log')} not read: it is a symbolic link`)
    t.match(stateOf(root).error?.message, /not read: it is a symbolic link/, 'state.json says so too')
    held(t, r)
  })

  t.test('(o) cleanup removes releases the service filled with links to root\'s files, and nothing they point at', async t => {
    for (const id of releases()) {
      if (`releases/${id}` === current()) continue
      const d = join(serviceDir, 'releases', id)
      asService(user, 'ln', ['-sfn', outside.ownedDir, join(d, 'linked-dir')])
      asService(user, 'ln', ['-sf', outside.target, join(d, 'linked-file')])
    }
    commitTree(serving('b3'), 'b3')
    const r = await runCli([...args(), '--keep-releases', '1'])
    await ok(t, r, 'b3')
    t.match(stateOf(root).phases.find(p => p.name === 'cleanup'), { status: 'ok', detail: /^removed / })
    t.same(releases(), [current().replace('releases/', '')], 'only the live release is left: it is also the last good one')
    held(t, r)
  })

  t.test('(p) an upgrade from an agent that kept its records inside the releases: only what root\'s state.json vouches for is adopted', async t => {
    const records = join(stateDir, 'releases/app')
    const legacy = () => {
      // what an earlier agent left: its record in the release (root wrote it there), none in the state directory
      const id = current().replace('releases/', '')
      const st = stateOf(root)
      writeFileSync(join(serviceDir, 'releases', id, '.bootstrap-release.json'), JSON.stringify({ id, commit: st.commit, branch: 'stage', createdAt: new Date().toISOString(), good: true }))
      rmSync(records, { recursive: true, force: true })
      return id
    }
    const first = legacy()
    const adopted = await runCli(args())
    await ok(t, adopted, 'b3')
    t.equal(current(), `releases/${first}`, 'the live release kept: the previous run (success, this release) vouches for it')
    t.match(stateOf(root).phases.find(p => p.name === 'fetch'), { status: 'skipped', detail: /already live/ })
    t.match(JSON.parse(readFileSync(join(records, `${first}.json`), 'utf8')), { id: first, good: true, adoptedFrom: /^state\.json of run .* \(success\)$/ })
    held(t, adopted)

    // the previous run did not end in success with it: the record in the release is all there is, and it is not believed
    const second = legacy()
    const stateFile = join(stateDir, 'state.json')
    writeFileSync(stateFile, JSON.stringify({ ...stateOf(root), outcome: 'failed' }))
    const fresh = await runCli(args())
    await ok(t, fresh, 'b3')
    t.match(fresh.stdout, /has no record the agent can trust/)
    t.not(current(), `releases/${second}`, 'a fresh release of the same commit')
    t.notOk(releases().includes(second), 'the unvouched release was pruned by cleanup (it is not good)')
    held(t, fresh)
  })
})
