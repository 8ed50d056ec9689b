/**
 * releases/archive-process.ts with the real, compiled archive worker in a child process, as the
 * service user when the test runs as root (as the agent does): this unit test opts in to child
 * processes (testing.md), the point being what the separate, unprivileged process really does.
 * The archive passes by descriptor between the worker and files of the agent's (root only); every
 * case of the hostile corpus is refused there, writes nothing outside the releases directory and
 * leaves no temporary directory; what the worker reports is read as untrusted.
 */
import t, { type Test } from 'tap'
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { userInfo } from 'node:os'
import { execFileSync } from 'node:child_process'
import type { Exec } from '../../../agent/src/core/exec.js'
import { packAsServiceUser, unpackAsServiceUser, type WorkerOptions } from '../../../agent/src/releases/archive-process.js'
import { serializeEnv } from '../../../agent/src/secrets/env-file.js'
import { cleanExec, SERVICE_USER, WORKER, workerOptions } from '../../helpers/archive-worker.js'
import { HONEST_ENTRIES, HOSTILE_CASES, tarGz } from '../../helpers/hostile-archives.js'
import { sandboxDir } from '../../helpers/sandbox.js'
import { rejected } from '../../helpers/thrown.js'

const user = SERVICE_USER
const worker = WORKER
const clean = cleanExec
const w: WorkerOptions = workerOptions()
const ID = '20261203T010203Z-0123456789ab'

/** a sandbox as the agent lays it out: its own 0700 directory, the service user's releases and env file */
const layout = (t: Test) => {
  const dir = sandboxDir('archive-process')
  t.teardown(() => execFileSync('rm', ['-rf', dir]))
  const own = join(dir, 'agent')
  const releases = join(dir, 'releases')
  const envDir = join(dir, 'env')
  mkdirSync(own, { mode: 0o700 })
  mkdirSync(releases)
  mkdirSync(envDir, { mode: 0o700 })
  if (user) for (const d of [releases, envDir]) chownSync(d, user.uid, user.gid)
  return { dir, own, releases, envDir }
}

const writeEnv = (envDir: string, values: Record<string, string>) => {
  const file = join(envDir, 'app.env')
  writeFileSync(file, serializeEnv(values), { mode: 0o600 })
  if (user) chownSync(file, user.uid, user.gid)
  return file
}

/** a release made by the service user, as a clone and npm ci would leave it */
const release = (releases: string, files: Record<string, string>) => {
  const rel = join(releases, '20261201T000000Z-aaaaaaaaaaaa')
  for (const [p, c] of Object.entries({ 'server.js': 'console.log(1)\n', 'node_modules/dep/index.js': 'module.exports = 1\n', '.git/config': '[core]\n', ...files })) {
    mkdirSync(join(rel, p, '..'), { recursive: true })
    writeFileSync(join(rel, p), c)
  }
  const old = new Date(Date.now() - 60_000)
  for (const p of ['server.js', 'node_modules/dep/index.js']) utimesSync(join(rel, p), old, old)
  if (user) execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, rel])
  return rel
}


t.test('pack: the archive lands in a file of the agent (0600, its own), written by the worker through the descriptor; unpack makes it a release of the service user', async t => {
  const { own, releases, envDir } = layout(t)
  const rel = release(releases, {})
  const envFile = writeEnv(envDir, { API_KEY: 'sk-live-7f3a9c2e5b1d' })
  const out = join(own, 'a.tar.gz')
  const packed = await packAsServiceUser(w, rel, Date.now() - 1000, envFile, out)
  t.same(packed, { entries: 4, bytes: 34, excluded: 0, examples: [] }, 'server.js, node_modules/, dep/ and index.js; no .git')
  const st = lstatSync(out)
  t.equal(st.mode & 0o777, 0o600)
  t.equal(st.uid, userInfo().uid, "the agent's file, although the worker wrote it")
  t.notOk(gunzipSync(readFileSync(out)).includes('[core]'), 'no .git')

  const r = await unpackAsServiceUser(w, out, releases, ID, { maxBytes: packed.bytes, maxEntries: packed.entries })
  t.same(r, { entries: 4, bytes: 34 })
  t.equal(readFileSync(join(releases, ID, 'server.js'), 'utf8'), 'console.log(1)\n')
  const owner = lstatSync(join(releases, ID, 'node_modules/dep/index.js')).uid
  t.equal(owner, user?.uid ?? userInfo().uid, 'owned by the service user, like a clone')
  t.equal(lstatSync(join(releases, ID)).mode & 0o777, 0o755)
})

t.test('pack: files the service wrote after the release was complete are left out and counted', async t => {
  const { own, releases, envDir } = layout(t)
  const rel = release(releases, { 'uploads/avatar.png': 'png' })
  const packed = await packAsServiceUser(w, rel, Date.now() - 30_000, writeEnv(envDir, {}), join(own, 'a.tar.gz'))
  t.same(packed.examples, ['uploads/avatar.png'], 'the upload is newer than the release (.git, newer too, is never packed at all)')
  t.equal(packed.excluded, 1)
})

t.test('pack: a value of the env file in the release refuses the archive, naming the key and the file', async t => {
  const { own, releases, envDir } = layout(t)
  const rel = release(releases, {})
  writeFileSync(join(rel, 'cached-env.txt'), 'token=sk-live-7f3a9c2e5b1d')
  utimesSync(join(rel, 'cached-env.txt'), new Date(2020, 0, 1), new Date(2020, 0, 1))
  const e = await rejected(() => packAsServiceUser(w, rel, Date.now(), writeEnv(envDir, { STRIPE_KEY: 'sk-live-7f3a9c2e5b1d' }), join(own, 'a.tar.gz')))
  t.match(e, { code: 'CACHE_SECRET_IN_RELEASE', message: 'the release holds the value of secret key STRIPE_KEY in "cached-env.txt": not published' })
})

for (const c of HOSTILE_CASES) {
  t.test(`unpack refuses ${c.name}: nothing outside, no temporary directory, no release`, async t => {
    const { dir, own, releases } = layout(t)
    const archive = join(own, 'h.tar.gz')
    writeFileSync(archive, tarGz([...HONEST_ENTRIES, ...c.entries]), { mode: 0o600 })
    const before = readdirSync(dir).sort()
    const e = await rejected(() => unpackAsServiceUser(w, archive, releases, ID, { maxBytes: 1 << 20, maxEntries: 100 }))
    t.match(e, { code: 'CACHE_ARCHIVE_REFUSED', message: /^archive refused: / })
    t.same(readdirSync(releases), [], 'no release, no .extract-* directory')
    t.same(readdirSync(dir).sort(), before, 'nothing beside the releases')
    for (const o of c.outside) t.notOk(existsSync(join(dir, o)))
  })
}

t.test('unpack: a killed extraction left behind is removed by the next; more than recorded is refused', async t => {
  const { own, releases } = layout(t)
  const stale = join(releases, '.extract-Ab12Cd')
  mkdirSync(join(stale, 'half'), { recursive: true })
  if (user) execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, stale])
  const archive = join(own, 'a.tar.gz')
  writeFileSync(archive, tarGz(HONEST_ENTRIES), { mode: 0o600 })
  t.match(await rejected(() => unpackAsServiceUser(w, archive, releases, ID, { maxBytes: 10, maxEntries: 100 })), { code: 'CACHE_ARCHIVE_REFUSED', message: /more than the 10 bytes/ })
  t.same(readdirSync(releases), [], 'the stale directory went too')
  chmodSync(archive, 0o600)
  await unpackAsServiceUser(w, archive, releases, ID, { maxBytes: 1 << 20, maxEntries: 100 })
  t.same(readdirSync(releases), [ID])
})

t.test("the worker's report is untrusted: no report, a timeout, a usage error", async t => {
  const fake = (r: { exitCode: number; stderr: string; timedOut?: boolean }): Exec => ({
    async run() {
      return { stdout: '', timedOut: false, ...r }
    },
  })
  const dir = t.testdir()
  const fw = (exec: Exec): WorkerOptions => ({ exec, user: undefined, timeoutMs: 5000, worker })
  t.match(await rejected(() => unpackAsServiceUser(fw(fake({ exitCode: 0, stderr: 'garbage\n' })), join(dir, 'a'), dir, ID, { maxBytes: 1, maxEntries: 1 })), { code: 'CACHE_EXTRACT_FAILED', message: /failed \(exit 0\): no report/ })
  t.match(await rejected(() => unpackAsServiceUser(fw(fake({ exitCode: -1, stderr: '', timedOut: true })), join(dir, 'a'), dir, ID, { maxBytes: 1, maxEntries: 1 })), { message: /took longer than 5 s/ })
  t.match(await rejected(() => packAsServiceUser(fw(fake({ exitCode: 1, stderr: `${JSON.stringify({ error: 'x'.repeat(1000) })}\n` })), dir, 0, 'e', join(dir, 'o'))), { code: 'CACHE_PACK_FAILED', message: /^packing .* failed \(exit 1\): x{300}$/ })
  t.match(await rejected(() => unpackAsServiceUser(fw(fake({ exitCode: 2, stderr: '{"refused":"a \\"lie\\""}\n' })), join(dir, 'a'), dir, ID, { maxBytes: 1, maxEntries: 1 })), { code: 'CACHE_ARCHIVE_REFUSED', message: 'archive refused: a "lie"' })
  const packed = await packAsServiceUser(fw(fake({ exitCode: 0, stderr: '{"ok":true,"entries":-5,"bytes":"many","excluded":1.5,"examples":[1,"a",{}]}\n' })), dir, 0, 'e', join(dir, 'o2'))
  t.same(packed, { entries: 0, bytes: 0, excluded: 0, examples: ['a'] }, 'numbers that are no counts read as 0, examples that are no strings dropped')
})

t.test('the worker itself: a usage error is exit 1 with a report', async t => {
  const r = await clean.run(process.execPath, [worker, 'nonsense'], { env: { PATH: '/usr/bin:/bin' }, timeoutMs: 10_000 })
  t.equal(r.exitCode, 1)
  t.match(JSON.parse(r.stderr.trim()), { error: /^usage: archive-worker pack/ })
})
