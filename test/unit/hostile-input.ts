/**
 * Property-based tests (fast-check) of the parsers that take untrusted input: tags -> Settings,
 * manifests, agent.env. Whatever the input, the outcome is either valid settings that cannot
 * escape the root or reach a shell, or a ConfigError (exit 2) with a bounded, one-value message —
 * never another kind of exception.
 */
import t from 'tap'
import fc from 'fast-check'
import { relative, isAbsolute } from 'node:path'
import { ConfigError } from '../../agent/src/errors.js'
import { parseManifest } from '../../agent/src/manifest.js'
import { checkBranchName } from '../../agent/src/names.js'
import { pathsFor } from '../../agent/src/paths.js'
import { resolveSettings } from '../../agent/src/settings.js'

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
