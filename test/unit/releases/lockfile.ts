import t from 'tap'
import { lockfileProblem, lockfileRefused } from '../../../agent/src/releases/lockfile.js'

const dir = '/srv/app/releases/20260101T000000Z-0123456789ab'

t.test('a lockfile that parses is no problem (npm ci decides the rest)', async t => {
  t.equal(lockfileProblem('{"name":"app","lockfileVersion":3,"packages":{}}', dir), undefined)
  t.equal(lockfileProblem('[]', dir), undefined, 'npm accepts this one as an ancient lockfile')
})

t.test('no lockfile: LOCKFILE_MISSING, exit 2, naming the release directory', async t => {
  const e = lockfileProblem(undefined, dir)
  t.match(e, { code: 'LOCKFILE_MISSING', exitCode: 2, message: new RegExp(`no package-lock.json beside package.json in ${dir}`) })
  t.match(e?.remedy, /commit package-lock.json/)
})

t.test('merge-conflict markers: LOCKFILE_INVALID naming the line', async t => {
  const e = lockfileProblem('{\n  "name": "app",\n<<<<<<< HEAD\n  "version": "1"\n=======\n  "version": "2"\n>>>>>>> feature\n}\n', dir)
  t.match(e, { code: 'LOCKFILE_INVALID', exitCode: 2 })
  t.match(e?.message, `package-lock.json in ${dir} is not valid JSON (a merge-conflict marker on line 3)`)
  t.match(e?.remedy, /resolve the merge conflict/)
})

t.test('unparseable JSON: LOCKFILE_INVALID with the parser\'s reason, never a quote of the text', async t => {
  const token = 'npm_SECRETtoken1234567890'
  const e = lockfileProblem(`{"packages":{"node_modules/a":{"resolved":"https://u:${token}@registry.example/a.tgz"`, dir)
  t.match(e, { code: 'LOCKFILE_INVALID', message: /is not valid JSON \(/ })
  t.notMatch(e?.message, 'npm_SECRET', 'no part of the text is echoed')
  t.match(e?.remedy, /regenerate the lockfile with npm install/)
  const quoted = lockfileProblem(`"${token}" trailing`, dir)
  t.notMatch(quoted?.message, 'npm_SECRET', 'V8 quotes the text it failed on; the quote is dropped')
})

// npm 11's own output (LANG=C), as npm ci prints it to stderr
const usage = ['npm error', 'npm error Clean install a project', 'npm error', 'npm error Usage:', 'npm error npm ci']
const outOfSync = [
  'npm error code EUSAGE',
  'npm error',
  'npm error `npm ci` can only install packages when your package.json and package-lock.json or npm-shrinkwrap.json are in sync. Please update your lock file with `npm install` before continuing.',
  'npm error',
  'npm error Missing: tiny@1.0.0 from lock file',
  'npm error Missing: tiny@1.0.0 from lock file',
  'npm error Invalid: lock file\'s left-pad@1.0.0 does not satisfy left-pad@1.3.0',
  ...usage,
].join('\n')
const noLockfile = [
  'npm error code EUSAGE',
  'npm error',
  'npm error The `npm ci` command can only install with an existing package-lock.json or',
  'npm error npm-shrinkwrap.json with lockfileVersion >= 1. Run an install with npm@5 or',
  'npm error later to generate a package-lock.json file, then try again.',
  ...usage,
].join('\n')

t.test('out of sync: LOCKFILE_OUT_OF_SYNC with npm\'s Missing/Invalid lines, once each', async t => {
  const e = lockfileRefused(outOfSync, dir)
  t.match(e, { code: 'LOCKFILE_OUT_OF_SYNC', exitCode: 2 })
  t.equal(e?.message, `package.json and package-lock.json in ${dir} are out of sync: npm ci installs only what the lockfile lists:\nMissing: tiny@1.0.0 from lock file\nInvalid: lock file's left-pad@1.0.0 does not satisfy left-pad@1.3.0`)
  t.match(e?.remedy, /run npm install to update package-lock.json/)
})

t.test('a parsed lockfile npm cannot use: LOCKFILE_INVALID', async t => {
  t.match(lockfileRefused(noLockfile, dir), { code: 'LOCKFILE_INVALID', exitCode: 2, message: /is not a lockfile npm ci can use/ })
})

t.test('any other failure is not a lockfile refusal', async t => {
  t.equal(lockfileRefused('npm error code ECONNREFUSED\nnpm error syscall connect', dir), undefined)
  t.equal(lockfileRefused('npm error code EUSAGE\nnpm error Unknown option --frobnicate', dir), undefined)
  t.equal(lockfileRefused('npm error code 3\nnpm error command failed\nnpm error command sh -c exit 3', dir), undefined)
})
