/**
 * releases/install.ts on a real temp directory with a fake Exec seam standing in for npm: the install key
 * (what decides that node_modules may be reused) and how npm ci's failures are reported.
 */
import t from 'tap'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Exec, RunResult } from '../../../agent/src/core/exec.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { installKey, npmCi, npmErrorSummary, readInstallInputs, readInstallKey } from '../../../agent/src/releases/install.js'
import { rejected } from '../../helpers/thrown.js'

const lockfile = JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, packages: { '': { name: 'app' } } })
const pkg = (o: Record<string, unknown> = {}) => JSON.stringify({ name: 'app', version: '1.0.0', scripts: { start: 'node s.js' }, ...o })

t.test('the install key follows what npm ci reads, not the rest of package.json', async t => {
  const base = installKey({ lockfile, packageJson: pkg() })
  const same = (name: string, packageJson: string, npmrc?: string) =>
    t.equal(installKey({ lockfile, packageJson, ...(npmrc === undefined ? {} : { npmrc }) }), base, name)
  const differs = (name: string, i: Parameters<typeof installKey>[0]) => t.not(installKey(i), base, name)
  same('a new start script', pkg({ scripts: { start: 'node other.js' } }))
  same('a new description', pkg({ description: 'x' }))
  same('the same fields in another key order', JSON.stringify({ scripts: { start: 'node s.js' }, version: '1.0.0', name: 'app' }))
  differs('a dependency only package.json has (npm ci refuses it)', { lockfile, packageJson: pkg({ dependencies: { tiny: '1.0.0' } }) })
  differs('an install script', { lockfile, packageJson: pkg({ scripts: { start: 'node s.js', postinstall: 'node setup.js' } }) })
  differs('overrides', { lockfile, packageJson: pkg({ overrides: { tiny: '2.0.0' } }) })
  differs('the project .npmrc', { lockfile, packageJson: pkg(), npmrc: 'registry=https://npm.example/\n' })
  differs('another lockfile', { lockfile: `${lockfile}\n`, packageJson: pkg() })
  differs('an unparseable package.json (its bytes count)', { lockfile, packageJson: '{ nope' })
})

t.test('readInstallKey: none without a lockfile; package.json and .npmrc read beside it', async t => {
  const dir = t.testdir({ svc: { 'package.json': pkg() } })
  const repo = { dir, owner: process.getuid?.() ?? 0 }
  t.equal(await readInstallKey(repo, 'svc'), undefined)
  writeFileSync(join(dir, 'svc/package-lock.json'), lockfile)
  t.equal(await readInstallKey(repo, 'svc'), installKey({ lockfile, packageJson: pkg() }))
  writeFileSync(join(dir, 'svc/.npmrc'), 'fetch-retries=1\n')
  t.equal(await readInstallKey(repo, 'svc'), installKey({ lockfile, packageJson: pkg(), npmrc: 'fetch-retries=1\n' }))
})

t.test('readInstallInputs reads as the service user\'s files: a link (to a root-only file) is refused, never read', async t => {
  const dir = t.testdir({ 'canary.txt': 'canary-only-root-reads-this', svc: { 'package.json': pkg(), 'package-lock.json': lockfile } })
  const repo = { dir, owner: process.getuid?.() ?? 0 }
  symlinkSync(join(dir, 'canary.txt'), join(dir, 'svc/.npmrc'))
  const e = await rejected(() => readInstallInputs(repo, 'svc'))
  t.match(e, { code: 'UNTRUSTED_PATH_REFUSED', message: /\.npmrc: it is a symbolic link/ })
  t.notMatch(String(e instanceof Error ? e.message : e), /canary-only/)
  t.same(await readInstallInputs(repo, 'none'), undefined, 'no lockfile')
})

/** npm as a fake: answers every call with `result`, records the calls */
const fakeNpm = (result: Partial<RunResult>) => {
  const calls: string[][] = []
  const exec: Exec = {
    async run(file, args) {
      calls.push([file, ...args])
      return { exitCode: 0, stdout: '', stderr: '', timedOut: false, ...result }
    },
  }
  return { exec, calls }
}

const ci = async (dir: string, result: Partial<RunResult>) => {
  const npm = fakeNpm(result)
  const lock = (() => {
    try {
      return readFileSync(join(dir, 'package-lock.json'), 'utf8')
    } catch {
      return undefined
    }
  })()
  const e = await rejected(() => npmCi({ exec: npm.exec, dir, lockfile: lock, home: dir, user: undefined, timeoutMs: 1000, onLine: () => {} }))
  if (!isAgentError(e)) throw e
  return { e, calls: npm.calls }
}

t.test('a missing or unparseable lockfile fails before npm runs, exit 2', async t => {
  const missing = await ci(t.testdir({ 'package.json': pkg() }), {})
  t.match(missing.e, { code: 'LOCKFILE_MISSING', exitCode: 2 })
  t.same(missing.calls, [], 'npm never ran')
  const conflict = await ci(t.testdir({ 'package.json': pkg(), 'package-lock.json': '<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> b\n' }), {})
  t.match(conflict.e, { code: 'LOCKFILE_INVALID', exitCode: 2, message: /merge-conflict marker on line 1/ })
  t.same(conflict.calls, [])
})

t.test('npm ci\'s failures: out of sync (exit 2), registry unreachable (retryable), anything else (exit 1)', async t => {
  const dir = t.testdir({ 'package.json': pkg(), 'package-lock.json': lockfile })
  const sync = await ci(dir, {
    exitCode: 1,
    stderr: 'npm error code EUSAGE\nnpm error `npm ci` can only install packages when your package.json and package-lock.json or npm-shrinkwrap.json are in sync.\nnpm error Missing: tiny@1.0.0 from lock file\nnpm error Clean install a project\n',
  })
  t.match(sync.e, { code: 'LOCKFILE_OUT_OF_SYNC', exitCode: 2, message: /Missing: tiny@1\.0\.0 from lock file/ })
  t.match(sync.calls, [['npm', 'ci']])
  const offline = await ci(dir, { exitCode: 1, stderr: 'npm error code ECONNREFUSED\nnpm error FetchError: request to http://127.0.0.1:9/tiny failed\n' })
  t.match(offline.e, { code: 'NPM_REGISTRY_UNREACHABLE', exitCode: 1, retryable: true })
  const script = await ci(dir, { exitCode: 3, stderr: 'npm error code 3\nnpm error command failed\nnpm error command sh -c exit 3\n' })
  t.match(script.e, { code: 'NPM_CI_FAILED', exitCode: 1, retryable: false, message: /npm ci failed \(exit 3\)[^]*command sh -c exit 3/ })
  const slow = await ci(dir, { exitCode: 143, timedOut: true })
  t.match(slow.e, { code: 'NPM_CI_TIMEOUT', retryable: true, message: /timed out after 1 s/ })
})

t.test('npmErrorSummary: npm\'s error lines, without stack frames, the log pointer or the usage text', async t => {
  const text = [
    'npm warn config something',
    'npm error code EUSAGE',
    'npm error what went wrong',
    'npm error     at Foo (/usr/lib/node_modules/npm/x.js:1:1)',
    'npm error Clean install a project',
    'npm error Usage:',
    'npm error npm ci',
    'npm error A complete log of this run can be found in: /root/.npm/_logs/x.log',
  ].join('\n')
  t.equal(npmErrorSummary(text), 'npm error code EUSAGE\nnpm error what went wrong')
  t.equal(npmErrorSummary('plain\noutput\n'), 'plain\noutput', 'no npm error lines: the last lines')
})
