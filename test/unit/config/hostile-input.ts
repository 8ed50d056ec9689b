/**
 * Property-based tests (fast-check) of the parsers that take untrusted input: tags -> Settings,
 * manifests (and a huge manifest file), agent.env. Whatever the input, the outcome is either valid
 * settings that cannot escape the root or reach a shell, or a ConfigError (exit 2) with a bounded,
 * one-value message — never another kind of exception. Secret sources that hold the same key
 * merge by the documented precedence, each override reported without its value.
 */
import t from 'tap'
import fc from 'fast-check'
import { relative, isAbsolute } from 'node:path'
import { ConfigError } from '../../../agent/src/core/errors.js'
import { loadServiceSpec, MANIFEST_MAX_BYTES, parseManifest } from '../../../agent/src/config/manifest.js'
import { checkBranchName } from '../../../agent/src/config/names.js'
import { pathsFor } from '../../../agent/src/core/paths.js'
import { mergeSecrets, type SecretPayload } from '../../../agent/src/secrets/source.js'
import { resolveSettings } from '../../../agent/src/config/settings.js'
import { rejected } from '../../helpers/thrown.js'

const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom('', ' ', '../..', '../../etc', 'a/../../b', '$(reboot)', '`id`', 'a;rm -rf /', 'a\nb', 'a\rb', '-rf', '--upload-pack=x',
    'x'.repeat(5000), 'ünïcödé', 'a b', 'a..b', 'a.lock', '.hidden', 'refs/heads/x', '@{-1}', 'main~1', 'HEAD^', 'a\u0000b', 'stage/../../x'),
)

const outcome = (fn: () => unknown): 'ok' | ConfigError => {
  try {
    fn()
    return 'ok'
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
}

t.test('any tag values: valid settings inside the root, or a clear exit-2 error', async t => {
  fc.assert(fc.property(hostile, hostile, hostile, hostile, (service, environment, repository, branch) => {
    const r = outcome(() => {
      const s = resolveSettings({ flags: {}, env: {}, agentEnv: {}, mode: 'aws', tags: { Service: service, Environment: environment, Repository: repository, Branch: branch } })
      const p = pathsFor('/root-under-test', s.service)
      for (const dir of [p.serviceDir, p.envFile, p.releasesDir]) {
        const rel = relative('/root-under-test', dir)
        if (rel.startsWith('..') || isAbsolute(rel)) throw new Error(`${dir} escapes the root`)
      }
      if (checkBranchName(s.branch) !== undefined) throw new Error(`invalid branch accepted: ${JSON.stringify(s.branch)}`)
      if (/^-/.test(s.repository) || /\s/.test(s.repository)) throw new Error(`hostile repository accepted: ${JSON.stringify(s.repository)}`)
    })
    if (r !== 'ok') {
      if (r.exitCode !== 2) throw new Error(`exit ${r.exitCode}`)
      if (r.message.length > 600) throw new Error(`message of ${r.message.length} characters`)
      if (r.remedy.length === 0) throw new Error('no remedy')
    }
  }), { numRuns: 500 })
  t.pass('500 random tag sets')
})

t.test('accepted service names are plain path components', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 80 }), name => {
    const r = outcome(() => resolveSettings({ flags: {}, env: {}, agentEnv: {}, mode: 'aws', tags: { Service: name, Environment: 'stage', Repository: 'file:///r.git' } }))
    if (r === 'ok' && !/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`accepted ${JSON.stringify(name)}`)
  }), { numRuns: 500 })
  t.pass('500 random service names')
})

const jsonish: fc.Arbitrary<unknown> = fc.letrec(tie => ({
  value: fc.oneof({ depthSize: 'small' }, fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 12 }), tie('value'), { maxKeys: 5 })),
})).value

t.test('any manifest text: a manifest, or an error naming the file and the field', async t => {
  const service = fc.record({
    path: fc.oneof(fc.constant('.'), fc.constant('../x'), fc.constant('/etc'), fc.string({ maxLength: 20 })),
    start: fc.oneof(jsonish, fc.constant({ script: 'server.js' }), fc.constant({ command: ['python3'] })),
    instances: fc.oneof(fc.integer(), fc.constant('max'), fc.string()),
    env: fc.oneof(jsonish, fc.dictionary(fc.string({ maxLength: 10 }), fc.string())),
  }, { requiredKeys: [] })
  const doc = fc.oneof(
    jsonish.map(v => JSON.stringify(v) ?? 'null'),
    fc.dictionary(fc.stringMatching(/^[a-z0-9-]{1,10}$/), service, { maxKeys: 3 }).map(services => JSON.stringify({ version: 1, services })),
    fc.string(),
  )
  fc.assert(fc.property(doc, text => {
    const r = outcome(() => parseManifest(text, 'bootstrap-agent.json'))
    if (r !== 'ok') {
      if (r.code !== 'MANIFEST_INVALID') throw new Error(`code ${r.code}`)
      if (!r.message.startsWith('bootstrap-agent.json')) throw new Error(`message does not name the file: ${r.message}`)
      if (r.message.length > 600) throw new Error(`message of ${r.message.length} characters`)
    } else {
      const m = parseManifest(text, 'bootstrap-agent.json')
      for (const s of Object.values(m.services)) {
        if (s.path !== undefined && (s.path.startsWith('/') || s.path.split('/').includes('..'))) throw new Error(`accepted path ${s.path}`)
      }
    }
  }), { numRuns: 400 })
  t.pass('400 random manifests')
})

t.test('a huge manifest file is refused by its size: exit 2 naming the file, its size and the limit', async t => {
  const huge = JSON.stringify({ version: 1, services: { app: { env: { K: 'x'.repeat(MANIFEST_MAX_BYTES) } } } })
  const dir = t.testdir({ 'bootstrap-agent.json': huge, 'package.json': '{}' })
  const e = await rejected(() => loadServiceSpec({ dir, owner: process.getuid?.() ?? 0 }, 'bootstrap-agent.json', 'app'))
  if (!(e instanceof ConfigError)) return t.fail(`expected a ConfigError, got ${String(e)}`)
  t.equal(e.code, 'MANIFEST_INVALID')
  t.equal(e.exitCode, 2)
  t.equal(e.message, `bootstrap-agent.json is ${Buffer.byteLength(huge)} bytes: expected at most ${MANIFEST_MAX_BYTES}`)
  t.match(e.remedy, /fix bootstrap-agent.json/)
})

t.test('the same key from several sources: later wins, each override named by its sources, never its values', async t => {
  const key = fc.constantFrom('API_KEY', 'DB_PASSWORD', 'TOKEN')
  const source = fc.dictionary(key, fc.string({ maxLength: 20 }).map(v => `value:${v}`), { maxKeys: 3 })
  const str = (o: Record<string, string>): SecretPayload => ({ kind: 'string', text: JSON.stringify(o) })
  fc.assert(fc.property(source, source, source, (shared, own, params) => {
    // /stage/app/db/password -> DB_PASSWORD (the documented parameter name rule)
    const items = Object.entries(params).map(([k, value]) => ({ name: `/stage/app/${k.toLowerCase().replace('_', '/')}`, value }))
    const m = mergeSecrets({
      secretIds: ['stage/shared', 'stage/app'],
      secrets: new Map([['stage/shared', str(shared)], ['stage/app', str(own)]]),
      parameters: [{ path: '/stage/app/', items }],
    })
    const expected: Record<string, string> = {}
    const from: Record<string, string> = {}
    const overrides: { key: string; from: string; by: string }[] = []
    const put = (k: string, v: string, by: string) => {
      if (from[k] !== undefined) overrides.push({ key: k, from: from[k], by })
      expected[k] = v
      from[k] = by
    }
    for (const [k, v] of Object.entries(shared)) put(k, v, 'stage/shared')
    for (const [k, v] of Object.entries(own)) put(k, v, 'stage/app')
    for (const i of [...items].sort((a, b) => a.name.localeCompare(b.name))) put(i.name.slice('/stage/app/'.length).replace('/', '_').toUpperCase(), i.value, i.name)
    if (JSON.stringify(m.values) !== JSON.stringify(expected)) throw new Error(`values ${JSON.stringify(m.values)}, expected ${JSON.stringify(expected)}`)
    if (JSON.stringify(m.overrides) !== JSON.stringify(overrides)) throw new Error(`overrides ${JSON.stringify(m.overrides)}, expected ${JSON.stringify(overrides)}`)
    if (JSON.stringify(m.overrides).includes('value:')) throw new Error('an override carries a value')
  }), { numRuns: 300 })
  t.pass('300 random sets of overlapping sources')
})

t.test('parameters that map to the same key: the same winner whatever order the API returns them in', async t => {
  const items = [
    { name: '/stage/app/db/password', value: 'a' },
    { name: '/stage/app/db-password', value: 'b' },
    { name: '/stage/app/db.password', value: 'c' },
  ]
  const winners = new Set<string>()
  fc.assert(fc.property(fc.shuffledSubarray(items, { minLength: items.length }), shuffled => {
    const m = mergeSecrets({ secretIds: [], secrets: new Map(), parameters: [{ path: '/stage/app/', items: shuffled }] })
    winners.add(`${m.values['DB_PASSWORD']} from ${m.origin['DB_PASSWORD']}`)
    if (m.overrides.length !== 2 || m.overrides.some(o => o.key !== 'DB_PASSWORD')) throw new Error(`overrides ${JSON.stringify(m.overrides)}`)
  }), { numRuns: 50 })
  t.equal(winners.size, 1, `one winner, by parameter name order: ${[...winners].join(', ')}`)
})
