import t from 'tap'
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadServiceSpec, parseManifest, resolveServiceSpec } from '../../../agent/src/config/manifest.js'
import { MANIFEST_SCHEMA } from '../../../agent/src/config/manifest-schema.js'
import { ConfigError } from '../../../agent/src/core/errors.js'
import { rejected, thrown } from '../../helpers/thrown.js'

const F = 'bootstrap-agent.json'
const m = (services: unknown) => JSON.stringify({ version: 1, services })

/** a repository checked out by this test's own user */
const mine = (dir: string) => ({ dir, owner: process.getuid?.() ?? 0 })

t.test('schema/manifest.schema.json is the schema the agent validates with', async t => {
  const file = JSON.parse(await readFile(new URL('../../../schema/manifest.schema.json', import.meta.url), 'utf8'))
  t.same(file, JSON.parse(JSON.stringify(MANIFEST_SCHEMA)), 'regenerate with: npm run agent -- manifest-schema > schema/manifest.schema.json')
})

t.test('a full manifest resolves', async t => {
  const raw = parseManifest(m({
    'auth-service': {
      path: 'services/auth', start: { script: 'dist/server.js' }, instances: 2, nodeArgs: ['--max-old-space-size=256'],
      build: ['npm', 'run', 'build'], env: { PORT: '3000' }, health: { url: 'http://127.0.0.1:3000/health', timeoutSeconds: 20 },
      requiredEnv: ['DB_URL'], killTimeoutMs: 8000,
    },
  }), F)
  const spec = resolveServiceSpec(raw, 'auth-service', F, { hasStartScript: true, main: undefined })
  t.same(spec.start, { kind: 'script', script: 'dist/server.js' })
  t.equal(spec.instances, 2)
  t.same(spec.health, { kind: 'http', url: 'http://127.0.0.1:3000/health', expectStatus: 200, timeoutMs: 20_000 })
  t.same(spec.requiredEnv, ['DB_URL'])
  t.equal(spec.killTimeoutMs, 8000)
})

t.test('defaults without a manifest', async t => {
  t.same(resolveServiceSpec(undefined, 'a', F, { hasStartScript: true, main: 'x.js' }).start, { kind: 'npm', script: 'start' })
  t.same(resolveServiceSpec(undefined, 'a', F, { hasStartScript: false, main: 'x.js' }).start, { kind: 'script', script: 'x.js' })
  const spec = resolveServiceSpec(undefined, 'a', F, undefined)
  t.same(spec.start, { kind: 'script', script: 'index.js' })
  t.same(spec.health, { kind: 'pm2' })
  t.equal(spec.path, '.')
  t.notOk(spec.hasPackageJson)
})

t.test('static sites and commands', async t => {
  const raw = parseManifest(m({
    admin: { start: { static: { dir: 'dist', port: 8080, spa: true } }, build: ['npm', 'run', 'build'] },
    bot: { start: { command: ['python3', '-m', 'bot'] } },
  }), F)
  t.same(resolveServiceSpec(raw, 'admin', F, undefined).start, { kind: 'static', dir: 'dist', port: 8080, spa: true })
  t.same(resolveServiceSpec(raw, 'bot', F, undefined).start, { kind: 'command', argv: ['python3', '-m', 'bot'] })
})

const bad: [string, string, RegExp][] = [
  ['malformed JSON', '{"version": 1,', /is not valid JSON/],
  ['wrong version', JSON.stringify({ version: 2, services: { a: {} } }), /field "version" must be equal to constant/],
  ['unknown top-level key', JSON.stringify({ version: 1, services: { a: {} }, extra: 1 }), /field "\(top level\)" has unknown key "extra"/],
  ['unknown service key', m({ a: { port: 3 } }), /field "services.a" has unknown key "port"/],
  ['instances wrong type', m({ a: { instances: 'two' } }), /field "services.a.instances"/],
  ['path escaping the repo', m({ a: { path: '../outside' } }), /field "services.a.path" is not valid: expected a relative path inside[^]*got "..\/outside"/],
  ['absolute path', m({ a: { path: '/etc' } }), /field "services.a.path"/],
  ['build as a string (would need a shell)', m({ a: { build: 'npm run build && rm -rf /' } }), /field "services.a.build" must be array/],
  ['health URL off this host', m({ a: { health: { url: 'http://10.0.0.1/health' } } }), /field "services.a.health/],
  ['bad env key', m({ a: { env: { 'BAD-KEY': 'x' } } }), /field "services.a.env"/],
  ['bad service name', m({ 'Bad Name': {} }), /field "services"/],
  ['huge', m({ a: { env: { K: 'x'.repeat(300 * 1024) } } }), /bytes: expected at most/],
]
for (const [name, text, re] of bad) {
  t.test(`rejects ${name}, naming the field`, async t => {
    const e = thrown(() => parseManifest(text, F))
    if (!(e instanceof ConfigError)) return t.fail(`expected a ConfigError, got ${String(e)}`)
    t.equal(e.code, 'MANIFEST_INVALID')
    t.equal(e.exitCode, 2)
    t.match(e.message, re)
    t.match(e.message, F)
  })
}

t.test('a service missing from the manifest', async t => {
  const e = thrown(() => resolveServiceSpec(parseManifest(m({ a: {}, b: {} }), F), 'c', F, undefined))
  t.match(e, { code: 'MANIFEST_SERVICE_MISSING', message: /does not declare service "c"; it declares "a", "b"/ })
})

t.test('cluster mode needs a script', async t => {
  const e = thrown(() => resolveServiceSpec(parseManifest(m({ a: { start: { npm: 'start' }, instances: 2 } }), F), 'a', F, undefined))
  t.match(e, { message: /cluster mode needs a Node.js "script" start/ })
})

t.test('loadServiceSpec refuses paths leaving the repository through symlinks', async t => {
  const dir = t.testdir({ repo: { [F]: m({ a: { path: 'svc' } }) }, outside: { 'package.json': '{}' } })
  await symlink(join(dir, 'outside'), join(dir, 'repo', 'svc'))
  const e = await rejected(() => loadServiceSpec(mine(join(dir, 'repo')), F, 'a'))
  t.match(e, { code: 'MANIFEST_PATH_ESCAPES' })
  await mkdir(join(dir, 'repo2'))
  await writeFile(join(dir, 'repo2', 'package.json'), JSON.stringify({ main: '../../outside/x.js' }))
  t.match(await rejected(() => loadServiceSpec(mine(join(dir, 'repo2')), F, 'a')), { code: /MANIFEST_PATH_(ESCAPES|MISSING)/ })
})

t.test('loadServiceSpec reads package.json facts', async t => {
  const dir = t.testdir({ 'package.json': JSON.stringify({ scripts: { start: 'node s.js' } }) })
  const spec = await loadServiceSpec(mine(dir), F, 'svc')
  t.same(spec.start, { kind: 'npm', script: 'start' })
  t.ok(spec.hasPackageJson)
  t.notOk(spec.fromManifest)
})

t.test('loadServiceSpec follows the repository\'s own links for paths, and returns the path resolved', async t => {
  const dir = t.testdir({ [F]: m({ a: { path: 'api', start: { script: 'main.js' } } }), services: { api: { 'package.json': '{}', 'server.js': '' } } })
  await symlink('services/api', join(dir, 'api'))
  await symlink('server.js', join(dir, 'services/api/main.js'))
  const spec = await loadServiceSpec(mine(dir), F, 'a')
  t.equal(spec.path, 'services/api')
  t.same(spec.start, { kind: 'script', script: 'main.js' })
  t.ok(spec.hasPackageJson)
})

t.test('loadServiceSpec reads the manifest and package.json as files, never through a link (a link is refused, its target never quoted)', async t => {
  const dir = t.testdir({ repo: {}, outside: { 'canary.json': '"canary-value-only-root-reads"' } })
  const repo = join(dir, 'repo')
  await symlink(join(dir, 'outside/canary.json'), join(repo, F))
  const e = await rejected(() => loadServiceSpec(mine(repo), F, 'a'))
  t.match(e, { code: 'UNTRUSTED_PATH_REFUSED', exitCode: 2, message: /bootstrap-agent\.json: it is a symbolic link/ })
  t.notMatch(String(e instanceof Error ? e.message : e), /canary-value/)
  await rm(join(repo, F))
  await symlink(join(dir, 'outside/canary.json'), join(repo, 'package.json'))
  t.match(await rejected(() => loadServiceSpec(mine(repo), F, 'a')), { code: 'UNTRUSTED_PATH_REFUSED', message: /package\.json: it is a symbolic link/ })
  await rm(join(repo, 'package.json'))
  await writeFile(join(repo, 'package.json'), '{}')
  t.match(await rejected(() => loadServiceSpec({ dir: repo, owner: 4242 }, F, 'a')), { code: 'UNTRUSTED_PATH_REFUSED', message: /not to the service user \(uid 4242\)/ }, 'a file of another user')
})

t.test('preStop: an argv for the drain, optional', async t => {
  const raw = parseManifest(JSON.stringify({ version: 1, services: { a: { preStop: ['node', 'drain.js', '--fast'] }, b: {} } }), F)
  t.same(resolveServiceSpec(raw, 'a', F, undefined).preStop, ['node', 'drain.js', '--fast'])
  t.equal(resolveServiceSpec(raw, 'b', F, undefined).preStop, undefined)
  t.match(thrown(() => parseManifest(JSON.stringify({ version: 1, services: { a: { preStop: [] } } }), F)), { code: 'MANIFEST_INVALID', message: /field "services.a.preStop"/ })
  t.match(thrown(() => parseManifest(JSON.stringify({ version: 1, services: { a: { preStop: 'node drain.js' } } }), F)), { code: 'MANIFEST_INVALID', message: /services.a.preStop/ })
})
