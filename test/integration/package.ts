/**
 * The release artifact (`npm run package`) as an instance meets it: extracted into a directory
 * outside this checkout and run with a PATH that has Node but not the repo's node_modules. It
 * reports its version, plans against a file:// repository, and does a full local run whose
 * PM2 is the artifact's own, ending healthy.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { buildRelease, cleanPath, runClean } from '../helpers/release.js'
import { appFiles, freePort, getJson, pm2List, REPO, removeSandbox, sandboxDir, writeSecrets } from '../helpers/sandbox.js'

const release = buildRelease()
const dir = sandboxDir('package')
const root = join(dir, 'root')
t.teardown(() => removeSandbox(dir, root))

const agentDir = join(dir, 'bootstrap-agent')
const started = process.hrtime.bigint()
const tar = spawnSync('tar', ['-xzf', release.tarball, '-C', dir], { encoding: 'utf8' })
const bin = join(agentDir, 'bin/bootstrap-agent')
const env = { PATH: cleanPath, HOME: '/root', LANG: 'C.UTF-8' }
const version = await runClean(bin, ['--version'], env)
const ms = Number(process.hrtime.bigint() - started) / 1e6
t.comment(`artifact ${(statSync(release.tarball).size / 1024 / 1024).toFixed(1)} MiB; extract + --version took ${ms.toFixed(0)} ms (a figure, not a test)`)

t.test('the tarball and its checksum', async t => {
  t.match(readFileSync(release.checksumFile, 'utf8'), new RegExp(`^[0-9a-f]{64}  ${release.fileName.replaceAll('.', '\\.')}\\n$`), 'sha256sum format')
  const check = spawnSync('sha256sum', ['--check', '--strict', release.checksumFile], { cwd: dirname(release.tarball), encoding: 'utf8' })
  t.equal(check.status, 0, check.stdout + check.stderr)
  t.equal(tar.status, 0, tar.stderr)
})

t.test('layout: one bundle, the files loaded by path beside it, PM2 with its dependencies', async t => {
  t.ok(statSync(bin).mode & 0o111, 'the launcher is executable')
  for (const f of ['dist/agent.mjs', 'dist/env-preload.js', 'dist/run-with-env.js', 'dist/archive-worker.js', 'schema/manifest.schema.json', 'user-data/templates/bootstrap.sh.tpl', 'node_modules/pm2/bin/pm2']) {
    t.ok(existsSync(join(agentDir, f)), f)
  }
  const pkg = JSON.parse(readFileSync(join(agentDir, 'package.json'), 'utf8'))
  t.match(pkg, { version: release.version, type: 'module' })
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8'))
  t.equal(JSON.parse(readFileSync(join(agentDir, 'node_modules/pm2/package.json'), 'utf8')).version, lock.packages['node_modules/pm2'].version, 'the PM2 the tests run against')
  for (const bundled of ['@aws-sdk', 'pino', 'simple-git', 'execa', 'ajv']) t.notOk(existsSync(join(agentDir, 'node_modules', bundled)), `${bundled} is in the bundle, not beside it`)
  // the bundle finds PM2 the way pm2/cli.ts does, from its own location
  t.equal(createRequire(join(agentDir, 'dist/agent.mjs')).resolve('pm2/package.json'), join(agentDir, 'node_modules/pm2/package.json'))
})

t.test('--version, from outside the checkout', async t => {
  t.equal(version.code, 0, version.stderr)
  t.equal(version.stdout.trim(), release.version)
})

const port = await freePort()
const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: appFiles({ port, greeting: 'from the artifact' }) } })
const secretsFile = join(dir, 'secrets.json')
writeSecrets(secretsFile, { secrets: { 'stage/app': { API_KEY: 'k-artifact-0123456789' } } })
const common = ['--local', '--root', root, '--tag', 'Service=app', '--tag', 'Environment=stage', '--tag', `Repository=${repo.fileUrl}`, '--secrets-file', secretsFile, '--json']

t.test('plan --local', async t => {
  const r = await runClean(bin, ['plan', ...common], env)
  t.equal(r.code, 0, r.stderr)
  const plan = JSON.parse(r.stdout)
  t.equal(plan.branch, 'stage')
  t.equal(plan.commit, await repo.head('stage'))
  t.notOk(existsSync(root), 'plan wrote nothing')
})

t.test('run --local: deployed and healthy, with the artifact PM2 and preload', async t => {
  const r = await runClean(bin, ['run', ...common, '--stable-window', '1'], env)
  t.equal(r.code, 0, r.stderr)
  t.equal((await getJson(`http://127.0.0.1:${port}/`))['greeting'], 'from the artifact')
  const [app] = pm2List(root)
  t.equal(app?.pm2_env.status, 'online')
  // PM2 starts the service with the env preload that sits beside the bundle
  const stored: unknown = app?.pm2_env
  const nodeArgs: unknown = typeof stored === 'object' && stored !== null && 'node_args' in stored ? stored.node_args : undefined
  t.ok(Array.isArray(nodeArgs) && nodeArgs.includes(join(agentDir, 'dist/env-preload.js')), `node_args ${JSON.stringify(nodeArgs)}`)
})
