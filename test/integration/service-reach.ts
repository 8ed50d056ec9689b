/**
 * As root, repo code runs as the service user, which must reach the root, a file:// repository
 * and the agent's own files. A --root or repository below a directory it cannot enter (mode
 * 0700, as root's home or a `mktemp -d` directory) fails before anything is written, exit 2,
 * naming that directory with its mode and owner; `plan` says the same. And the quick start works
 * from a checkout under such a directory: the demo moves its sandbox where the user can reach it.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { appFiles, freePort, REPO, removeSandbox, runCli, sandboxDir, writeSecrets } from '../helpers/sandbox.js'

if (process.getuid?.() !== 0) throw new Error('service-reach.ts checks what the service user can reach when the agent is root: it needs root')

const dir = sandboxDir('service-reach')
/** mode 0700, owned by root: the service user cannot enter it */
const closed = mkdtempSync(join(tmpdir(), 'closed-'))
t.teardown(() => {
  removeSandbox(dir)
  rmSync(closed, { recursive: true, force: true })
})

const port = await freePort()
const files = appFiles({ port, greeting: 'reach' })
const open = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: files } })
const hidden = await createFixtureRepo({ root: join(closed, 'git'), name: 'app', branches: { stage: files } })
const secretsFile = join(dir, 'secrets.json')
writeSecrets(secretsFile, { secrets: { 'stage/app': { API_KEY: 'k' } } })

/** Every file under `root`: after a refused run, only the run's own record (what `status` reads). */
const filesUnder = (root: string): string[] =>
  existsSync(root) ? readdirSync(root, { recursive: true, withFileTypes: true }).filter(e => !e.isDirectory()).map(e => join(e.parentPath, e.name).slice(root.length + 1)).sort() : []
const RECORD_ONLY = ['var/lib/bootstrap-agent/state.json', 'var/log/bootstrap-agent/agent.log']
const stateOf = (root: string) => JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8'))

const args = (root: string, repository: string, command = 'run') => [
  command, '--local', '--root', root, '--json',
  '--tag', 'Service=app', '--tag', 'Environment=stage', '--tag', `Repository=${repository}`,
  '--secrets-file', secretsFile,
]

t.test('a --root below a 0700 directory: exit 2 naming it, nothing created', async t => {
  const root = join(closed, 'root')
  const r = await runCli(args(root, `file://${open.bareDir}`))
  t.equal(r.code, 2, r.stderr)
  t.match(r.stderr, `[SERVICE_USER_CANNOT_REACH]`)
  t.match(r.stderr, `cannot enter ${closed}, above ${join(root, 'srv')} (mode 0700, owner root:root)`)
  t.match(r.stderr, /what to do: use a --root the service user can reach .*chmod o\+x .*run the agent as a non-root user/)
  t.notMatch(r.stderr, /GIT_FAILED|Permission denied/, 'not blamed on git')
  t.same(filesUnder(root), RECORD_ONLY, 'nothing created but the run\'s own record: no service directory, release, env file or PM2 home')
  t.equal(stateOf(root).error.code, 'SERVICE_USER_CANNOT_REACH', 'status shows why')
  rmSync(root, { recursive: true })

  const plan = await runCli(args(root, `file://${open.bareDir}`, 'plan'))
  t.equal(plan.code, 0, plan.stderr)
  const p = JSON.parse(plan.stdout)
  t.match(p.action, /^would fail before changing anything \(exit 2, SERVICE_USER_CANNOT_REACH\)/)
  t.match(p.serviceUserReach.problem, `cannot enter ${closed}`)
  t.same(readdirSync(closed).sort(), ['git'], 'plan created nothing at all')
})

t.test('a file:// repository below a 0700 directory: exit 2 naming it, nothing created', async t => {
  const root = join(dir, 'root-hidden-repo')
  const r = await runCli(args(root, `file://${hidden.bareDir}`))
  t.equal(r.code, 2, r.stderr)
  t.match(r.stderr, `cannot enter ${closed}, above ${hidden.bareDir} (mode 0700, owner root:root)`)
  t.match(r.stderr, 'it needs the file:// repository')
  t.match(r.stderr, 'move the repository where the service user can read it')
  t.same(filesUnder(root), RECORD_ONLY, 'nothing created but the run\'s own record')
  t.equal(stateOf(root).error.phase, 'fetch')
})

t.test('a reachable root and repository deploy as before', async t => {
  const root = join(dir, 'root-ok')
  t.teardown(() => removeSandbox(join(dir, 'unused'), root))
  const r = await runCli([...args(root, `file://${open.bareDir}`), '--stable-window', '1'])
  t.equal(r.code, 0, r.stderr)
})

t.test('npm run demo works from a checkout under a 0700 directory, and demo:stop removes its sandbox', async t => {
  // a checkout as a user would have it (the sources, built dist/, installed node_modules)
  const co = join(closed, 'ec2-bootstrap-agent')
  mkdirSync(co)
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'agent', 'dist', 'scripts', 'examples', 'schema', 'user-data', 'systemd']) {
    cpSync(join(REPO, f), join(co, f), { recursive: true })
  }
  symlinkSync(join(REPO, 'node_modules'), join(co, 'node_modules'))
  const demo = (...a: string[]) => spawnSync(process.execPath, [join(co, 'scripts/demo.mjs'), ...a], { cwd: co, encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/root' } })
  t.teardown(() => demo('--stop'))

  const r = demo()
  t.equal(r.status, 0, `${r.stdout}\n${r.stderr}`)
  const where = /so the demo runs in (\/var\/tmp\/ec2-bootstrap-agent-demo-[0-9a-f]{8})/.exec(r.stdout)?.[1]
  t.ok(where, `the demo says where its sandbox is: ${r.stdout.slice(0, 400)}`)
  t.match(r.stdout, `${closed} is mode 0700: the service user bootstrap-app cannot reach this checkout`)
  t.match(r.stdout, /secret fingerprint matches the key/)
  t.notOk(existsSync(join(co, '.demo')), 'no sandbox inside the unreachable checkout')

  const stop = demo('--stop')
  t.equal(stop.status, 0, stop.stderr)
  t.match(stop.stdout, `${where} removed`)
  t.notOk(where && existsSync(where), 'demo:stop removed the sandbox from where it was')
})
