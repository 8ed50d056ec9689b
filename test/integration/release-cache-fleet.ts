/**
 * The release cache at fleet scale and under SIGKILL, against moto's S3 (real SDK, path-style):
 *
 * - five instances boot the same new commit at once against an empty cache: all succeed, one
 *   publisher wins the conditional write of the index entry, the cache ends with one valid entry;
 * - a 200 MB release is published and booted from with the agent's peak RSS under 100 MB:
 *   archive, scan, upload, download, checksum and extraction all stream;
 * - SIGKILL during the download, during the extraction and during the publication: no partial
 *   release under a release id, no index entry without its archive; the next run converges.
 *
 * The services listen on ports of their own choosing (PM2's online state is the health check), so
 * several instances serve at once.
 */
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { startCacheWorld, PREFIX, type Instance } from '../helpers/cache-world.js'
import { peakRss } from '../helpers/proc-sampler.js'
import { buildRelease } from '../helpers/release.js'
import { removeSandbox, sandboxDir, type CliResult, type StartedCli } from '../helpers/sandbox.js'

// a ceiling for a loaded 2-core machine (200 MB through moto several times), not a timing assertion
t.setTimeout(1_800_000)

const dir = sandboxDir('release-cache-fleet')
t.teardown(() => removeSandbox(dir))
const w = await startCacheWorld(t, dir)
const { s3Proxy } = w

const exits = (t: Test, r: { code: number | null; stdout: string; stderr: string }, code: number) =>
  t.equal(r.code, code, `exit ${code}`, r.code === code ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-6000) })
const phase = (i: Instance, name: string) => i.state().phases.find(p => p.name === name)
const RELEASE_ID = /^\d{8}T\d{6}Z-[0-9a-f]{12}$/

/** every index entry of `commit` in the bucket, parsed */
const entries = async (commit: string) => {
  const all = await w.objects()
  return [...all].filter(([k]) => k.includes(`/index/${commit}/`)).map(([key, body]) => ({ key, entry: JSON.parse(body.toString()) as { key: string; archive: { object: string; sha256: string; bytes: number } }, all }))
}

/** a valid entry: its archive is in the bucket, with the sha256 and size it records */
const validEntry = async (t: Test, commit: string) => {
  const found = await entries(commit)
  t.equal(found.length, 1, 'one index entry')
  const e = found[0]
  if (!e) return undefined
  const archive = e.all.get(e.entry.archive.object)
  t.ok(archive, 'its archive is in the bucket')
  t.equal(createHash('sha256').update(archive ?? Buffer.alloc(0)).digest('hex'), e.entry.archive.sha256, 'with the sha256 it records')
  return e
}

/** What a killed run may leave, and may not: no release under an id without its marker being
 * complete, and `current` (if any) on a complete release. */
const noPartialRelease = (t: Test, i: Instance) => {
  const releases = join(i.serviceDir, 'releases')
  for (const name of existsSync(releases) ? readdirSync(releases) : []) {
    if (!RELEASE_ID.test(name)) continue
    // a release directory without the agent's marker is incomplete: never switched to, pruned later
    const complete = existsSync(join(releases, name, '.bootstrap-release.json'))
    if (complete) t.ok(existsSync(join(releases, name, 'server.js')), `${name} is whole`)
  }
  const current = join(i.serviceDir, 'current')
  if (existsSync(current)) t.ok(existsSync(join(i.serviceDir, readlinkSync(current), '.bootstrap-release.json')), '`current` is on a complete release')
}

/** waits for `cond` while `run` lives; false when the run ended first */
const when = async (run: StartedCli, cond: () => boolean): Promise<boolean> => {
  let ended = false
  void run.exit.then(() => (ended = true))
  while (!ended) {
    if (cond()) return true
    await new Promise(r => setTimeout(r, 10))
  }
  return cond()
}

/** starts `i`'s run, stalls its S3 requests matching `match`, SIGKILLs it once one stalled */
const killedWhileStalled = async (t: Test, i: Instance, match: (r: { method: string; path: string }) => boolean, what: string) => {
  s3Proxy.fail({ kind: 'stall' }, Number.POSITIVE_INFINITY, match)
  const run = i.start()
  t.ok(await when(run, () => s3Proxy.requests.some(r => r.fault === 'stall')), what)
  run.killGroup()
  await run.exit
  await s3Proxy.clear()
}

t.test('five instances boot the same new commit at once against an empty cache: all succeed, one valid entry', async t => {
  const commit = await w.commit({ greeting: 'fleet', port: 0 })
  const five = await Promise.all([0, 1, 2, 3, 4].map(n => w.instance(n)))
  const results = await Promise.all(five.map(i => i.run()))
  results.forEach((r, n) => exits(t, r, 0))
  for (const i of five) t.equal(i.state().outcome, 'success')
  const published = five.filter(i => phase(i, 'publish')?.status === 'ok')
  t.equal(published.length, 1, 'one publisher won the conditional write')
  for (const i of five.filter(x => !published.includes(x))) {
    t.match(phase(i, 'publish'), { status: 'skipped', detail: /^published already by i-/ }, 'the others found its entry')
  }
  const e = await validEntry(t, commit)
  t.match(JSON.parse(readFileSync(join(five[0]?.root ?? '', 'var/lib/bootstrap-agent/state.json'), 'utf8')).cache.lookup, /^miss: /)
  const archives = [...(e?.all.keys() ?? [])].filter(k => k.startsWith(`${PREFIX}/app/archives/${e?.entry.key}/`))
  t.comment(`archives uploaded for that key: ${archives.length} (the losers' are unreferenced, for the lifecycle rule)`)
  const sixth = await w.instance(5)
  exits(t, await sixth.run(), 0)
  t.equal(sixth.state().releaseFrom, 'cache', 'the next instance boots from the entry')
})

/** 100 MiB of random bytes (no compression) and 100 MiB of text (much), written by the build */
const BIG_BUILD = `
const fs = require('node:fs')
const { randomBytes } = require('node:crypto')
fs.mkdirSync('dist/random', { recursive: true })
fs.mkdirSync('dist/text', { recursive: true })
for (let i = 0; i < 100; i++) fs.writeFileSync('dist/random/' + i + '.bin', randomBytes(1 << 20))
const line = n => 'line ' + n + ' of a generated bundle, compressible as text is\\n'
for (let i = 0; i < 100; i++) {
  const parts = []
  let size = 0
  for (let n = 0; size < (1 << 20); n++) { const l = line(i * 100000 + n); parts.push(l); size += l.length }
  fs.writeFileSync('dist/text/' + i + '.js', parts.join('').slice(0, 1 << 20))
}
fs.writeFileSync('dist/build.json', JSON.stringify({ builtBy: process.pid, at: Date.now() }))
`

// measured on the release artifact, what an instance runs (one bundle: the unbundled dist/ loads
// tens of MB more of the SDK's CommonJS builds)
const release = buildRelease()
execFileSync('tar', ['-xzf', release.tarball, '-C', dir])
const ARTIFACT = join(dir, 'bootstrap-agent/dist/agent.mjs')

let big = ''
const measured = async (i: Instance): Promise<{ r: CliResult; rssMb: number }> => {
  const run = i.start({}, {}, ARTIFACT)
  const rss = peakRss(run.pid)
  const { code } = await run.exit
  const rssMb = rss.stop()
  return { r: { code, stdout: run.stdout(), stderr: run.stderr(), cmdlines: [] }, rssMb }
}

t.test('a 200 MB release: published and booted from with the agent under 100 MB of RSS (streamed)', async t => {
  big = await w.commit({ greeting: 'big', port: 0, build: ['node', 'big-build.js'], extra: { 'big-build.js': BIG_BUILD } })
  const publisher = await w.instance(6)
  const p = await measured(publisher)
  exits(t, p.r, 0)
  t.match(phase(publisher, 'publish'), { status: 'ok' })
  const e = await validEntry(t, big)
  t.comment(`publishing instance: peak RSS ${p.rssMb} MB; archive ${Math.round((e?.entry.archive.bytes ?? 0) / 1e6)} MB; ${phase(publisher, 'publish')?.detail}`)
  t.ok(p.rssMb < 100, `the publishing agent's peak RSS (${p.rssMb} MB) is under 100 MB`)
  t.ok((e?.entry.archive.bytes ?? 0) > 100e6, 'a release of that size really went through')
  const reader = await w.instance(7)
  const h = await measured(reader)
  exits(t, h.r, 0)
  t.equal(reader.state().releaseFrom, 'cache')
  t.comment(`booting instance: peak RSS ${h.rssMb} MB; ${phase(reader, 'fetch')?.detail}`)
  t.ok(h.rssMb < 100, `the booting agent's peak RSS (${h.rssMb} MB) is under 100 MB`)
})

t.test('SIGKILL during the download: nothing extracted; the next run removes the partial download and boots from the cache', async t => {
  const i = await w.instance(8)
  // the archive's bytes stop coming; the run sits in its download until it is killed
  await killedWhileStalled(t, i, r => r.method === 'GET' && r.path.includes('/archives/'), 'the download began')
  t.same(readdirSync(join(i.serviceDir, 'releases')).filter(n => RELEASE_ID.test(n)), [], 'no release directory')
  noPartialRelease(t, i)
  const again = await i.run()
  exits(t, again, 0)
  t.equal(i.state().releaseFrom, 'cache')
  t.same(readdirSync(join(i.root, 'var/lib/bootstrap-agent/release-cache')), [], "the agent's work directory is empty again")
})

t.test('SIGKILL during the extraction: no partial release under a release id; the next run converges', async t => {
  const i = await w.instance(9)
  const releases = join(i.serviceDir, 'releases')
  const run = i.start()
  const caught = await when(run, () => existsSync(releases) && readdirSync(releases).some(n => n.startsWith('.extract-')))
  t.ok(caught, 'the extraction began')
  run.killGroup()
  await run.exit
  t.comment(`left behind: ${readdirSync(releases).join(', ')}`)
  noPartialRelease(t, i)
  t.notOk(existsSync(join(i.serviceDir, 'current')), 'nothing went live')
  const again = await i.run()
  exits(t, again, 0)
  t.equal(i.state().releaseFrom, 'cache')
  t.same(readdirSync(releases).filter(n => n.startsWith('.extract-')), [], 'the killed extraction was removed')
  t.same(readdirSync(releases).filter(n => RELEASE_ID.test(n)).length, 1, 'one release: the incomplete one was pruned')
})

t.test('SIGKILL during the publication: no index entry without its archive; the next run publishes', async t => {
  const commit = await w.commit({ greeting: 'killed publisher', port: 0 })
  const i = await w.instance(10)
  await killedWhileStalled(t, i, r => r.method === 'PUT' && r.path.includes('/archives/'), 'the archive upload began')
  t.same(await entries(commit), [], 'no index entry is visible')
  t.equal(i.state().outcome, 'running', 'state.json says the run did not finish')
  t.equal(phase(i, 'complete')?.status, 'ok', 'after the hook was completed')
  const again = await i.run()
  exits(t, again, 0)
  t.equal(i.state().releaseFrom, 'live')
  t.match(phase(i, 'publish'), { status: 'ok' })
  await validEntry(t, commit)
})
