/**
 * releases/cache-publish.ts with an in-memory CacheStore and the real archive worker (as the
 * service user when root): the order of the writes (archive, then entry, then pointer), the
 * entry's content, a fleet's common case (published already), a lost conditional write, the
 * replacement of an unusable entry, and a failure at each step leaving no entry behind.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { readReleaseCacheKey } from '../../../agent/src/releases/cache-key.js'
import { archiveKey, indexKey, pointerKey, type IndexEntry } from '../../../agent/src/releases/cache-index.js'
import { publishRelease, type PublishInput } from '../../../agent/src/releases/cache-publish.js'
import { workerOptions } from '../../helpers/archive-worker.js'
import { cacheSandbox, COMMIT, LOC, RUNTIME, type CacheSandbox } from '../../helpers/cache-release.js'
import { memoryStore, type MemoryStore } from '../../helpers/memory-store.js'
import { rejected } from '../../helpers/thrown.js'

const input = (s: CacheSandbox, store: MemoryStore, over: Partial<PublishInput> = {}): PublishInput => ({
  store, loc: LOC, worker: workerOptions(), service: 'app', branch: 'stage', commit: COMMIT, spec: s.spec, runtime: RUNTIME,
  dir: s.dir, owner: s.owner, completedAt: new Date(Date.now() - 1000), envFile: s.envFile, workDir: s.workDir, publishedBy: 'i-0aaa',
  replace: false, now: () => new Date('2026-12-01T10:00:00Z'), ...over,
})
const INDEX = indexKey(LOC, 'app', COMMIT, RUNTIME)
const POINTER = pointerKey(LOC, 'app', 'stage', RUNTIME)

t.test('published: the archive, then the index entry (a conditional write), then the branch pointer', async t => {
  const s = await cacheSandbox(t)
  const store = memoryStore()
  const r = await publishRelease(input(s, store))
  if (r.result !== 'published') throw new Error(`expected published, got ${r.result}`)
  const key = await readReleaseCacheKey({ dir: s.dir, owner: s.owner }, s.spec, COMMIT, RUNTIME)
  const archive = store.objects.get(r.entry.archive.object)
  if (!archive) throw new Error('no archive')
  const sha256 = createHash('sha256').update(archive).digest('hex')
  t.same(r.entry, {
    format: 1, key, service: 'app', commit: COMMIT, branch: 'stage', runtime: RUNTIME,
    archive: { object: archiveKey(LOC, 'app', key, sha256), sha256, bytes: archive.length, unpackedBytes: r.entry.archive.unpackedBytes, entries: 9 },
    publishedAt: '2026-12-01T10:00:00.000Z', publishedBy: 'i-0aaa',
  })
  t.same(store.calls.map(c => [c.method, c.key, c.ifAbsent]), [
    ['getText', INDEX, undefined],
    ['upload', r.entry.archive.object, undefined],
    ['putText', INDEX, true],
    ['putText', POINTER, false],
  ], 'looked first, then archive -> entry -> pointer')
  t.same(JSON.parse(store.objects.get(INDEX)?.toString() ?? '{}'), r.entry)
  t.match(JSON.parse(store.objects.get(POINTER)?.toString() ?? '{}'), { format: 1, service: 'app', branch: 'stage', commit: COMMIT, key })
  t.same(readdirSync(s.workDir), [], 'the archive file is gone from the work directory')
})

t.test("a fleet's common case: the entry is there already, nothing is packed or written", async t => {
  const s = await cacheSandbox(t)
  const store = memoryStore()
  await publishRelease(input(s, store))
  store.calls.length = 0
  const r = await publishRelease(input(s, store, { publishedBy: 'i-0bbb' }))
  t.same(r, { result: 'already', indexObject: INDEX, publishedBy: 'i-0aaa' })
  t.same(store.calls.map(c => c.method), ['getText'])
})

t.test('another instance wins the conditional write meanwhile: "already", and no pointer of ours', async t => {
  const s = await cacheSandbox(t)
  const store = memoryStore()
  const theirs = memoryStore()
  await publishRelease(input(s, theirs, { publishedBy: 'i-0ccc' }))
  const ourGet = store.getText.bind(store)
  let first = true
  // the entry appears between our look and our write
  store.getText = async (key, max) => {
    if (first) {
      first = false
      return undefined
    }
    return ourGet(key, max)
  }
  for (const [k, v] of theirs.objects) if (k === INDEX) store.objects.set(k, v)
  const r = await publishRelease(input(s, store))
  t.same(r, { result: 'already', indexObject: INDEX, publishedBy: 'i-0ccc' })
  t.notOk(store.objects.has(POINTER), 'the winner writes the pointer')
})

t.test('replace: an entry found unusable is overwritten, without looking first', async t => {
  const s = await cacheSandbox(t)
  const store = memoryStore()
  const stale: Partial<IndexEntry> = { format: 1, key: 'f'.repeat(64) }
  store.objects.set(INDEX, Buffer.from(JSON.stringify(stale)))
  const r = await publishRelease(input(s, store, { replace: true }))
  t.equal(r.result, 'published')
  t.same(store.calls.filter(c => c.method === 'putText').map(c => c.ifAbsent), [false, false], 'unconditional')
  t.not(JSON.parse(store.objects.get(INDEX)?.toString() ?? '{}').key, 'f'.repeat(64))
})

t.test('a failure at any step: no entry; the archive file is removed', async t => {
  for (const [method, expected] of [['upload', 0], ['putText', 1]] as const) {
    const s = await cacheSandbox(t)
    const store = memoryStore()
    store.fail(method, 'AWS_UNREACHABLE')
    t.match(await rejected(() => publishRelease(input(s, store))), { code: 'AWS_UNREACHABLE' }, method)
    t.notOk(store.objects.has(INDEX), `no entry after a failed ${method}`)
    t.equal([...store.objects.keys()].filter(k => k.includes('/archives/')).length, expected, 'an archive nothing points at, at most')
    t.same(readdirSync(s.workDir), [])
  }
})

t.test('a secret value in the release: not published, nothing uploaded', async t => {
  const s = await cacheSandbox(t, { API_KEY: 'sk-live-7f3a9c2e5b1d' })
  writeFileSync(join(s.dir, 'server.js'), 'const key = "sk-live-7f3a9c2e5b1d"\n')
  const store = memoryStore()
  t.match(await rejected(() => publishRelease(input(s, store, { completedAt: new Date(Date.now() + 60_000) }))), { code: 'CACHE_SECRET_IN_RELEASE', message: /API_KEY in "server\.js"/ })
  t.same(store.calls.map(c => c.method), ['getText'], 'nothing left the instance')
  t.same(readdirSync(s.workDir), [])
})
