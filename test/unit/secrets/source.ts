import t from 'tap'
import { mergeSecrets, parameterKey, secretToPairs, type SecretPayload } from '../../../agent/src/secrets/source.js'
import { ConfigError } from '../../../agent/src/core/errors.js'
import { thrown } from '../../helpers/thrown.js'

const str = (o: unknown): SecretPayload => ({ kind: 'string', text: JSON.stringify(o) })

t.test('parameter names map to env keys by the documented rule', async t => {
  t.equal(parameterKey('/stage/auth/', '/stage/auth/db/password'), 'DB_PASSWORD')
  t.equal(parameterKey('/stage/auth', '/stage/auth/api-key'), 'API_KEY')
  t.equal(parameterKey('/stage/auth/', '/stage/auth/smtp.host'), 'SMTP_HOST')
  t.throws(() => parameterKey('/s/', '/s/9lives'), /not a valid environment variable name/)
})

t.test('precedence: secrets in order, then parameters; overrides reported', async t => {
  const m = mergeSecrets({
    secretIds: ['stage/shared?', 'stage/auth'],
    secrets: new Map([['stage/shared', str({ A: 'shared', B: 'shared' })], ['stage/auth', str({ B: 'auth', C: 1, D: true })]]),
    parameters: [{ path: '/stage/auth/', items: [{ name: '/stage/auth/c', value: 'param' }] }],
  })
  t.same(m.values, { A: 'shared', B: 'auth', C: 'param', D: 'true' })
  t.same(m.origin, { A: 'stage/shared', B: 'stage/auth', C: '/stage/auth/c', D: 'stage/auth' })
  t.same(m.overrides.map(o => o.key), ['B', 'C'])
})

t.test('optional secrets may be missing, required ones may not', async t => {
  t.same(mergeSecrets({ secretIds: ['x?'], secrets: new Map(), parameters: [] }).values, {})
  const e = thrown(() => mergeSecrets({ secretIds: ['stage/auth'], secrets: new Map(), parameters: [] }))
  t.match(e, { code: 'SECRET_MISSING', message: /"stage\/auth" does not exist/ })
  t.type(e, ConfigError)
})

const SECRET = 'super-secret-value-9f8e7d'
const cases: [string, SecretPayload, string][] = [
  ['binary', { kind: 'binary' }, 'SECRET_NOT_OBJECT'],
  ['not JSON', { kind: 'string', text: `not json ${SECRET}` }, 'SECRET_NOT_OBJECT'],
  ['JSON array', str([SECRET]), 'SECRET_NOT_OBJECT'],
  ['JSON string', str(SECRET), 'SECRET_NOT_OBJECT'],
  ['nested value', str({ K: { inner: SECRET } }), 'SECRET_VALUE_NESTED'],
  ['null value', str({ K: null }), 'SECRET_VALUE_NESTED'],
  ['invalid key', str({ 'BAD-KEY': SECRET }), 'SECRET_KEY_INVALID'],
]
for (const [name, payload, code] of cases) {
  t.test(`${name} is a clear error that never echoes the value`, async t => {
    const e = thrown(() => secretToPairs('stage/auth', payload))
    if (!(e instanceof ConfigError)) return t.fail(`expected a ConfigError, got ${String(e)}`)
    t.equal(e.code, code)
    t.match(e.message, 'stage/auth')
    t.notMatch(e.message + e.remedy, SECRET, 'the value is not echoed')
  })
}
