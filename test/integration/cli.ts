/**
 * The CLI as a user meets it: help, version, plan (changes nothing), status, the lock (held:
 * exit 3 naming the holder; stale: broken), and exit 2 for bad input before anything is touched.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { appFiles, freePort, getJson, removeSandbox, runCli, sandboxDir, writeSecrets } from '../helpers/sandbox.js'

const dir = sandboxDir('cli')
const root = join(dir, 'root')
const port = await freePort()
const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: appFiles({ port, greeting: 'cli' }), main: appFiles({ port, greeting: 'main' }) } })
const secretsFile = join(dir, 'secrets.json')
writeSecrets(secretsFile, { secrets: { 'stage/app': { API_KEY: 'k-123456789' } } })
t.teardown(() => removeSandbox(dir, root))
const common = ['--local', '--root', root, '--tag', 'Service=app', '--tag', 'Environment=stage', '--tag', `Repository=${repo.fileUrl}`, '--secrets-file', secretsFile]

t.test('help and version', async t => {
  const v = await runCli(['--version'])
  t.equal(v.code, 0)
  t.equal(v.stdout.trim(), JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version)
  const h = await runCli(['--help'])
  t.match(h.stdout, /Commands:[^]*run[^]*plan[^]*status/)
  for (const c of ['run', 'plan', 'status']) t.match((await runCli([c, '--help'])).stdout, new RegExp(`Usage: bootstrap-agent ${c}`))
  const bad = await runCli(['deploy'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /unknown command "deploy"[^]*what to do: run bootstrap-agent --help/)
})

t.test('plan prints what run would do and changes nothing', async t => {
  const r = await runCli(['plan', ...common, '--json'])
  t.equal(r.code, 0, r.stderr)
  const plan = JSON.parse(r.stdout)
  t.equal(plan.branch, 'stage')
  t.equal(plan.commit, await repo.head('stage'))
  t.match(plan.action, /^deploy [0-9a-f]{12} as a new release/)
  t.same(plan.secrets.secretIds, ['stage/app'])
  t.same(plan.secrets.requiredEnv, ['API_KEY'])
  t.equal(plan.pm2Apps[0].name, 'app')
  t.ok(plan.phases.includes('verify'))
  t.notOk(existsSync(root), 'nothing was written under the root')
  t.notMatch(r.stdout + r.stderr, 'k-123456789', 'plan reads no secret value')
})

t.test('bad input: exit 2, nothing created', async t => {
  const r = await runCli(['run', '--local', '--root', root, '--tag', 'Service=../../etc', '--tag', 'Environment=stage', '--tag', `Repository=${repo.fileUrl}`])
  t.equal(r.code, 2)
  t.match(r.stderr, /tag Service: "..\/..\/etc" is not a valid service name/)
  t.notOk(existsSync(join(root, 'srv')), 'no service directory was created')
})

t.test('a held lock gives exit 3 and names the holder', async t => {
  const lockDir = join(root, 'var/lib/bootstrap-agent')
  mkdirSync(lockDir, { recursive: true })
  // a live holder: a sleeping child of ours, recorded as the lock's pid with its real start time
  const holder = spawn('sleep', ['30'])
  t.teardown(() => { holder.kill() })
  const stat = readFileSync(`/proc/${holder.pid}/stat`, 'utf8')
  const startTicks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  writeFileSync(join(lockDir, 'lock'), JSON.stringify({ pid: holder.pid, bootId, startTicks, startedAt: new Date().toISOString(), reason: 'boot', command: 'run', hostname: 'h', nonce: 'n' }))
  const r = await runCli(['run', ...common])
  t.equal(r.code, 3)
  t.match(r.stderr, new RegExp(`pid ${holder.pid}`))
  t.notOk(existsSync(join(root, 'srv')), 'nothing was done')
})

t.test('a stale lock (dead pid) is broken and the run proceeds', async t => {
  const lock = join(root, 'var/lib/bootstrap-agent/lock')
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  writeFileSync(lock, JSON.stringify({ pid: 2 ** 22 - 3, bootId, startTicks: '1', startedAt: '2026-01-01T00:00:00Z', reason: 'boot', command: 'run', hostname: 'h', nonce: 'n' }))
  const r = await runCli(['run', ...common, '--json'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /broke a stale lock/)
  t.notOk(existsSync(lock), 'the lock is released after the run')
  t.equal((await getJson(`http://127.0.0.1:${port}/`))['greeting'], 'cli')
})

t.test('status shows the last run', async t => {
  const r = await runCli(['status', '--root', root, '--json'])
  t.equal(r.code, 0)
  const s = JSON.parse(r.stdout)
  t.equal(s.state.outcome, 'success')
  t.equal(s.state.commit, await repo.head('stage'))
  t.equal(s.interrupted, false)
  const table = await runCli(['status', '--root', root])
  t.match(table.stdout, /outcome\s+success \(exit 0\)[^]*verify\s+ok/)
  t.ok(readdirSync(join(root, 'srv/app/releases')).length >= 1)
})
