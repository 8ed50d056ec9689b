/**
 * The real load path, end to end: env file written by writeFileAtomic, loaded by the COMPILED
 * preload through `node --import`, read back from the child's own process.env.
 * This unit test opts in to child processes (testing.md): the point is what node really does.
 *
 * Build policy: dist/ is (re)built here with the project's tsc when the compiled preload or one of
 * the modules it imports is missing or older than its source, so a stale dist cannot make the test
 * pass or fail for the wrong reason, and a fresh checkout needs no separate build step.
 */
import t from 'tap'
import fc from 'fast-check'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../../../agent/src/core/atomic-write.js'
import { serializeEnv } from '../../../agent/src/secrets/env-file.js'
import { compiled } from '../../helpers/compiled.js'

const preload = compiled(['secrets/env-preload', 'secrets/env-file', 'core/errors'])

const EX_CONFIG = 78

/** Runs node (with the preload unless told otherwise) and returns what the child printed. */
const runChild = (env: Record<string, string>, withPreload = true) => {
  const importArgs = withPreload ? ['--import', preload] : []
  const r = spawnSync(
    process.execPath,
    [...importArgs, '-e', 'process.stdout.write(JSON.stringify(process.env))'],
    { env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  )
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

const childEnv = (file: string): Record<string, string> => {
  const r = runChild({ BOOTSTRAP_ENV_FILE: file, PATH: process.env.PATH ?? '' })
  assert.equal(r.status, 0, r.stderr)
  const parsed: unknown = JSON.parse(r.stdout)
  assert.ok(typeof parsed === 'object' && parsed !== null)
  return Object.fromEntries(Object.entries(parsed))
}

// Same shape as in secrets/env-file.ts's property: any code point plus the characters dotenv mangles.
const nasty = fc.constantFrom(
  '\n', '\r', '\r\n', '"', "'", '`', '\\', '\\n', '#', '$', '${X}', '=', ' ', '\t', 'e\u0301', '😀', '\u2028',
)
const envValue = fc
  .string({ unit: fc.oneof(nasty, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })) })
  .map(s => s.replaceAll('\0', ''))
const envMap = fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,20}$/), envValue, { maxKeys: 12 })

t.test('property: every key/value reaches the child process.env byte-exact', async t => {
  const file = join(t.testdir(), 'svc.env')
  await fc.assert(
    fc.asyncProperty(envMap, async m => {
      await writeFileAtomic(file, serializeEnv(m), { mode: 0o600 })
      const seen = childEnv(file)
      for (const [k, v] of Object.entries(m)) assert.equal(seen[k], v, `key ${k}`)
    }),
    { numRuns: 25 },
  )
  t.pass('25 random maps arrived intact')
})

t.test('the hard cases arrive intact, and the file overrides the inherited environment', async t => {
  const file = join(t.testdir(), 'svc.env')
  const m = {
    BACKSLASHES: 'C:\\dir\\n\\\\ end\\',
    NEWLINES: '\nfirst\r\nsecond\n',
    QUOTES: `"'\`"x'"`,
    SHELLISH: '#$HOME ${X} $(id) a=b',
    SPACES: '  both  ',
    EMPTY: '',
    UNICODE: 'e\u0301 😀 日本 \u2028',
    BIG: 'ab"\\\n'.repeat(200 * 1024),
    PATH: 'from-the-file',
  }
  await writeFileAtomic(file, serializeEnv(m), { mode: 0o600 })
  const seen = childEnv(file)
  for (const [k, v] of Object.entries(m)) t.equal(seen[k], v, k)
  t.equal(seen.BOOTSTRAP_ENV_FILE, file, 'the non-secret pointer stays visible')
})

t.test('without BOOTSTRAP_ENV_FILE the preload does nothing', async t => {
  // compared with a run without the preload, not with a literal: tap adds its own variables
  // (NODE_OPTIONS and per-process ids for coverage) to every child it sees
  const env = { PATH: process.env.PATH ?? '', KEEP: 'me' }
  const r = runChild(env)
  t.equal(r.status, 0)
  t.equal(r.stderr, '')
  const keys = (json: string) => Object.keys(JSON.parse(json)).sort()
  t.strictSame(keys(r.stdout), keys(runChild(env, false).stdout))
  t.match(JSON.parse(r.stdout), env)
})

t.test('a missing file exits 78 naming the path', async t => {
  const file = join(t.testdir(), 'nope.env')
  const r = runChild({ BOOTSTRAP_ENV_FILE: file, PATH: process.env.PATH ?? '' })
  t.equal(r.status, EX_CONFIG)
  t.equal(r.stdout, '', 'the app never ran')
  t.match(r.stderr, file)
  t.match(r.stderr, 'ENOENT')
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
})

const SECRET = 'S3cr3t-preload-91b2e4'
const corrupt: [string, string | Buffer][] = [
  ['unquoted value', `# header\nGOOD="1"\nKEY=${SECRET}\n`],
  ['line without =', `GOOD="1"\n${SECRET}\n`],
  ['truncated string', `KEY="${SECRET}\n`],
  ['escaped NUL', `KEY="${SECRET}\\u0000"\n`],
  ['invalid UTF-8', Buffer.concat([Buffer.from(`KEY="${SECRET}`), Buffer.from([0xff, 0xfe]), Buffer.from('"\n')])],
]

for (const [what, content] of corrupt) {
  t.test(`a corrupt file (${what}) exits 78 without printing any value`, async t => {
    const file = join(t.testdir(), 'svc.env')
    await writeFile(file, content, { mode: 0o600 })
    const r = runChild({ BOOTSTRAP_ENV_FILE: file, PATH: process.env.PATH ?? '' })
    t.equal(r.status, EX_CONFIG)
    t.equal(r.stdout, '', 'the app never ran')
    t.match(r.stderr, file)
    t.notMatch(r.stderr, SECRET)
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  })
}
