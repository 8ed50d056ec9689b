import assert from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import { ENV_FILE_HEADER, isValidEnvKey, parseEnv, serializeEnv } from '../../../agent/src/secrets/env-file.js'
import { isAgentError, type AgentError } from '../../../agent/src/core/errors.js'

const roundTrip = (m: Record<string, string>) => parseEnv(serializeEnv(m), 'test.env')
// order-insensitive and prototype-insensitive comparison of two maps
const entries = (m: Record<string, string>) => Object.entries(m).sort(([a], [b]) => (a < b ? -1 : 1))

const values: [string, string][] = [
  ['newline', 'line1\nline2\n'],
  ['crlf', 'a\r\nb\r\n'],
  ['lone cr', 'a\rb'],
  ['double quotes', 'say "hi"'],
  ['single quotes', "it's"],
  ['backticks', '`whoami`'],
  ['mixed quotes', `"'\`'"`],
  ['quoted whole', '"wrapped"'],
  ['hash', 'abc#def # not a comment'],
  ['leading hash', '#starts'],
  ['dollar', '$HOME ${PATH} $(id)'],
  ['equals', 'a=b==c='],
  ['backslashes', 'C:\\path\\to\\x \\\\ \\'],
  ['literal backslash-n', 'not a newline: \\n \\t \\u0041'],
  ['spaces', '  leading and trailing  '],
  ['tabs', '\tx\t'],
  ['empty', ''],
  ['utf-8', 'héllo wörld ß 日本語'],
  ['emoji', '😀 👩‍👩‍👧 🏳️‍🌈'],
  ['combining', 'e\u0301 a\u0308'],
  ['line separators', 'a\u2028b\u2029c\u0085d'],
  ['bom', '\uFEFFx'],
  ['control chars', '\u0001\u001b[31m\u007f'],
  ['json-looking', '{"a":1}'],
  ['1 MB', 'x\n"\\'.repeat(256 * 1024)],
]

for (const [name, value] of values) {
  t.test(`round-trips ${name}`, async t => {
    t.equal(roundTrip({ KEY: value }).KEY, value)
  })
}

t.test('format: header, sorted KEY=<JSON> lines, trailing newline', async t => {
  const text = serializeEnv({ b: 'two\n', A: 'one', _c: '' })
  t.equal(text, `${ENV_FILE_HEADER}\nA="one"\n_c=""\nb="two\\n"\n`)
  t.equal(serializeEnv({}), `${ENV_FILE_HEADER}\n`)
})

t.test('parse ignores comments and blank lines, tolerates CRLF files', async t => {
  const text = '# hi\n\n  \nA="1"\r\n# B="2"\r\nC="x\\r\\ny"\r\n'
  t.strictSame(entries(parseEnv(text, 'f')), [['A', '1'], ['C', 'x\r\ny']])
})

t.test('keys such as __proto__ are kept as own properties', async t => {
  const m = roundTrip(Object.fromEntries([['__proto__', 'p'], ['constructor', 'c']]))
  t.strictSame(Object.keys(m).sort(), ['__proto__', 'constructor'])
  t.equal(Object.getOwnPropertyDescriptor(m, '__proto__')?.value, 'p')
})

t.test('isValidEnvKey', async t => {
  for (const k of ['A', '_', 'a_1', 'DB_PASSWORD', '__proto__']) t.ok(isValidEnvKey(k), k)
  for (const k of ['', '1A', 'A-B', 'A B', 'A=B', 'É', 'A\n', ' A', 'A.b']) t.notOk(isValidEnvKey(k), k)
})

const SECRET = 'S3cr3t-value-7f3a9c'
const h = `${ENV_FILE_HEADER}\nOK="1"\n`
// [what, call, expected code, strings the message must name]
const errorCases: [string, () => unknown, string, string[]][] = [
  ['invalid key', () => serializeEnv({ 'BAD-KEY': SECRET }), 'SECRET_KEY_INVALID', ['"BAD-KEY"', 'not a valid']],
  ['empty key', () => serializeEnv({ '': SECRET }), 'SECRET_KEY_INVALID', ['""']],
  ['NUL', () => serializeEnv({ K: `${SECRET}\0tail` }), 'SECRET_VALUE_INVALID', ['K', 'NUL']],
  ['high surrogate', () => serializeEnv({ K: `${SECRET}\uD800` }), 'SECRET_VALUE_INVALID', ['K', 'surrogate']],
  ['low surrogate', () => serializeEnv({ K: `\uDC00${SECRET}` }), 'SECRET_VALUE_INVALID', ['K', 'surrogate']],
  ['line without =', () => parseEnv(`${h}${SECRET}\n`, '/etc/x.env'), 'ENV_FILE_INVALID', ['/etc/x.env:3', 'no "="']],
  ['unquoted value', () => parseEnv(`${h}K=${SECRET}\n`, 'f.env'), 'ENV_FILE_INVALID', ['f.env:3', 'K', 'JSON string']],
  ['unterminated', () => parseEnv(`${h}K="${SECRET}\n`, 'f.env'), 'ENV_FILE_INVALID', ['f.env:3']],
  ['array', () => parseEnv(`${h}K=["${SECRET}"]\n`, 'f.env'), 'ENV_FILE_INVALID', ['f.env:3']],
  ['number', () => parseEnv(`${h}K=1\n`, 'f.env'), 'ENV_FILE_INVALID', ['f.env:3']],
  ['bad key in file', () => parseEnv(`${h}${SECRET} x="y"\n`, 'f.env'), 'SECRET_KEY_INVALID', ['f.env:3']],
  ['duplicate', () => parseEnv(`${h}OK="${SECRET}"\n`, 'f.env'), 'ENV_FILE_INVALID', ['f.env:3', 'OK', 'twice']],
  ['escaped NUL', () => parseEnv(`K="${SECRET}\\u0000"\n`, 'f.env'), 'SECRET_VALUE_INVALID', ['f.env:1', 'NUL']],
  ['escaped surrogate', () => parseEnv(`K="${SECRET}\\ud800"`, 'f.env'), 'SECRET_VALUE_INVALID', ['f.env:1', 'surrogate']],
]

const errorOf = (fn: () => unknown): AgentError => {
  try {
    fn()
  } catch (e: unknown) {
    if (isAgentError(e)) return e
    throw e
  }
  throw new Error('expected an AgentError, nothing was thrown')
}

for (const [what, fn, code, names] of errorCases) {
  t.test(`rejects ${what} without quoting the value`, async t => {
    const e = errorOf(fn)
    t.equal(e.code, code)
    t.equal(e.name, 'ConfigError')
    t.notMatch(e.message, SECRET)
    t.notMatch(e.remedy, SECRET)
    for (const s of names) t.match(e.message, s)
  })
}

// Keys and values that exercise the format: any code point, plus the characters that break
// dotenv-style formats, more often than a uniform draw would produce them.
const envKey = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,20}$/)
const nasty = fc.constantFrom(
  '\n', '\r', '\r\n', '"', "'", '`', '\\', '\\n', '#', '$', '${X}', '=', ' ', '\t', 'e\u0301', '😀', '\u2028',
)
const envValue = fc
  .string({ unit: fc.oneof(nasty, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })) })
  // 'binary' never yields lone surrogates; NUL is the one code point an environment cannot hold
  .map(s => s.replaceAll('\0', ''))
const envMap = fc.dictionary(envKey, envValue, { maxKeys: 20 })

t.test('property: parseEnv(serializeEnv(m)) equals m', async t => {
  fc.assert(
    // assert throws, so fast-check sees the failure and shrinks it to a minimal map
    fc.property(envMap, m => assert.deepStrictEqual(entries(roundTrip(m)), entries(m))),
    { numRuns: 500 },
  )
  t.pass('500 random maps round-trip')
})
