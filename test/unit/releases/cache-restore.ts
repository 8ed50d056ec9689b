/**
 * releases/cache-restore.ts with an in-memory CacheStore and the real archive worker: a hit
 * (checked against its key once extracted), a miss, and every unusable case as an outcome, never
 * an exception: an entry that does not parse, an archive missing, truncated, not matching its
 * sha256 (never extracted), refused by the extraction, or whose release has another key; and S3
 * out of reach (not the entry's fault: it is not replaced).
 */
import t, { type Test } from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { archiveKey, indexKey } from '../../../agent/src/releases/cache-index.js'
import { publishRelease } from '../../../agent/src/releases/cache-publish.js'
import { readIndexEntry, restoreRelease, type RestoreInput } from '../../../agent/src/releases/cache-restore.js'
import { treeRemover } from '../../../agent/src/core/remove-tree.js'
import { cleanExec, SERVICE_USER, workerOptions } from '../../helpers/archive-worker.js'
import { cacheSandbox, COMMIT, LOC, RUNTIME, type CacheSandbox } from '../../helpers/cache-release.js'
import { HONEST_ENTRIES, HOSTILE_CASES, tarGz } from '../../helpers/hostile-archives.js'
import { memoryStore, type MemoryStore } from '../../helpers/memory-store.js'

const NEW_ID = '20261202T000000Z-0123456789ab'
const INDEX = indexKey(LOC, 'app', COMMIT, RUNTIME)

/** a published cache and a fresh instance's service directory to restore into */
const world = async (t: Test) => {
  const s = await cacheSandbox(t)
  const store = memoryStore()
  const r = await publishRelease({
    store, loc: LOC, worker: workerOptions(), service: 'app', branch: 'stage', commit: COMMIT, spec: s.spec, runtime: RUNTIME,
    dir: s.dir, owner: s.owner, completedAt: new Date(), envFile: s.envFile, workDir: s.workDir, publishedBy: 'i-0aaa', replace: false, now: () => new Date(),
  })
  if (r.result !== 'published') throw new Error('not published')
  const fresh = await cacheSandbox(t)
  return { s, fresh, store, entry: r.entry }
}

const restore = (fresh: CacheSandbox, store: MemoryStore, over: Partial<RestoreInput> = {}) =>
  restoreRelease({ store, loc: LOC, worker: workerOptions(), service: 'app', manifestFile: 'bootstrap-agent.json', commit: COMMIT, runtime: RUNTIME, paths: fresh.paths, id: NEW_ID, owner: fresh.owner, removeTree: treeRemover(cleanExec, SERVICE_USER), workDir: fresh.workDir, ...over })

t.test('a hit: the release extracted whole, its manifest loaded, its key the entry\'s', async t => {
  const { fresh, store, entry } = await world(t)
  const r = await restore(fresh, store)
  if (r.result !== 'hit') throw new Error(JSON.stringify(r))
  t.equal(r.object, `s3://fleet/${INDEX}`)
  t.same(r.entry, entry)
  t.equal(r.dir, join(fresh.releases, NEW_ID))
  t.equal(readFileSync(join(r.dir, 'dist/app.js'), 'utf8'), 'built()\n')
  t.same(r.spec.build, ['node', 'build.js'])
  t.same(readdirSync(fresh.workDir), [], 'the download is gone')
  t.same(await readIndexEntry(store, { loc: LOC, service: 'app', commit: COMMIT, runtime: RUNTIME }), entry)
})

t.test('a miss: no entry', async t => {
  const { fresh } = await world(t)
  t.same(await restore(fresh, memoryStore()), { result: 'miss', object: `s3://fleet/${INDEX}` })
})

t.test('unusable, the entry to blame (entryBad): the release is deployed from source and the entry replaced', async t => {
  const cases: [string, (store: MemoryStore, archive: string) => void, RegExp][] = [
    ['an entry that does not parse', store => store.objects.set(INDEX, Buffer.from('{"format":1}')), /no valid key/],
    ['its archive missing', (store, a) => store.objects.delete(a), /NoSuchKey/],
    ['its archive truncated', (store, a) => store.objects.set(a, (store.objects.get(a) ?? Buffer.alloc(0)).subarray(0, 10)), /is 10 bytes, its index entry says \d+: truncated/],
    ['its archive replaced (same size)', (store, a) => store.objects.set(a, Buffer.alloc(store.objects.get(a)?.length ?? 0, 7)), /^checksum mismatch: the archive's sha256 is [0-9a-f]{64}, its index entry says [0-9a-f]{64}; not extracted$/],
  ]
  for (const [name, spoil, reason] of cases) {
    const { fresh, store, entry } = await world(t)
    spoil(store, entry.archive.object)
    const r = await restore(fresh, store)
    t.match(r, { result: 'unusable', entryBad: true, reason }, name)
    t.same(readdirSync(fresh.releases).filter(n => n !== '20261201T000000Z-0123456789ab'), [], `${name}: nothing extracted`)
    t.same(readdirSync(fresh.workDir), [], `${name}: no download left`)
  }
})

t.test('a hostile archive behind a valid entry (sha256 and sizes right): refused, nothing left', async t => {
  const { fresh, store, entry } = await world(t)
  const c = HOSTILE_CASES[0]
  if (!c) throw new Error('no corpus')
  const gz = tarGz([...HONEST_ENTRIES, ...c.entries])
  const { createHash } = await import('node:crypto')
  const sha256 = createHash('sha256').update(gz).digest('hex')
  const object = `releases/stage/app/archives/${entry.key}/${sha256}.tar.gz`
  store.objects.set(object, gz)
  store.objects.set(INDEX, Buffer.from(JSON.stringify({ ...entry, archive: { object, sha256, bytes: gz.length, unpackedBytes: 1 << 20, entries: 100 } })))
  const r = await restore(fresh, store)
  t.match(r, { result: 'unusable', entryBad: true, reason: /^archive refused: "\.\.\/evil-dotdot" is outside the release$/, object: `s3://fleet/${object}` })
  t.notOk(existsSync(join(fresh.releases, NEW_ID)))
  t.notOk(existsSync(join(fresh.serviceDir, 'evil-dotdot')))
})

t.test("an archive whose release is not what the entry's key says: removed, unusable", async t => {
  const { fresh, store, entry } = await world(t)
  // an entry naming another key (its archive moved along, so everything else checks out)
  const key = 'e'.repeat(64)
  const object = archiveKey(LOC, 'app', key, entry.archive.sha256)
  store.objects.set(object, store.objects.get(entry.archive.object) ?? Buffer.alloc(0))
  store.objects.set(INDEX, Buffer.from(JSON.stringify({ ...entry, key, archive: { ...entry.archive, object } })))
  const r = await restore(fresh, store)
  t.match(r, { result: 'unusable', entryBad: true, reason: new RegExp(`^the extracted release's cache key is ${entry.key}, its index entry says ${key}$`) })
  t.notOk(existsSync(join(fresh.releases, NEW_ID)), 'the extracted release is removed')
})

t.test('a release whose manifest does not load: removed, unusable', async t => {
  const { fresh, store } = await world(t)
  const r = await restore(fresh, store, { manifestFile: 'another-manifest.json' })
  t.match(r, { result: 'unusable', entryBad: true, reason: /does not exist in the repository/ })
  t.notOk(existsSync(join(fresh.releases, NEW_ID)))
})

t.test('S3 out of reach or refusing: unusable, not the entry\'s fault (it is not replaced)', async t => {
  for (const [method, code] of [['getText', 'AWS_UNREACHABLE'], ['getText', 'AWS_ACCESS_DENIED'], ['getText', 'AWS_THROTTLED'], ['download', 'AWS_UNREACHABLE']] as const) {
    const { fresh, store } = await world(t)
    store.fail(method, code)
    t.match(await restore(fresh, store), { result: 'unusable', entryBad: false, reason: new RegExp(code === 'AWS_UNREACHABLE' ? 'AWS_UNREACHABLE' : code) }, `${method} ${code}`)
  }
  const { fresh, store } = await world(t)
  store.fail('getText', 'AWS_NOT_FOUND')
  t.match(await restore(fresh, store), { result: 'unusable', entryBad: false }, 'a missing bucket is no bad entry')
  const doc = await world(t)
  doc.store.fail('getText', 'CACHE_DOCUMENT_INVALID')
  t.match(await restore(doc.fresh, doc.store), { result: 'unusable', entryBad: true }, 'a document too large to be an entry is one')
})
