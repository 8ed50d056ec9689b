/**
 * releases/cache-index.ts, pure: where each object of the cache lives, and the index entry and
 * branch pointer read back as untrusted documents (each wrong form is a reason, not an exception).
 */
import t from 'tap'
import type { Runtime } from '../../../agent/src/releases/cache-key.js'
import {
  archiveKey, formatDocument, indexKey, parseBranchPointer, parseIndexEntry, pointerKey, type IndexEntry,
} from '../../../agent/src/releases/cache-index.js'

const loc = { bucket: 'fleet', prefix: 'releases/prod', url: 's3://fleet/releases/prod' }
const runtime: Runtime = { node: '22.11.0', abi: '127', platform: 'linux', arch: 'arm64', libc: 'glibc2.34' }
const commit = 'ab'.repeat(20)
const key = 'c'.repeat(64)
const sha = 'd'.repeat(64)
const entry: IndexEntry = {
  format: 1, key, service: 'api', commit, branch: 'main', runtime,
  archive: { object: archiveKey(loc, 'api', key, sha), sha256: sha, bytes: 1234, unpackedBytes: 5678, entries: 42 },
  publishedAt: '2026-12-01T00:00:00.000Z', publishedBy: 'i-0123456789abcdef0',
}
const expect = { loc, service: 'api', commit, runtime }

t.test('layout: index by commit and runtime, archives by key and their own sha256, pointers by runtime and branch', async t => {
  t.equal(indexKey(loc, 'api', commit.toUpperCase(), runtime), `releases/prod/api/index/${commit}/linux-arm64-glibc2.34-node22.11.0-abi127.json`)
  t.equal(archiveKey(loc, 'api', key, sha), `releases/prod/api/archives/${key}/${sha}.tar.gz`)
  t.equal(pointerKey(loc, 'api', 'release/2026-12', runtime), 'releases/prod/api/branches/linux-arm64-glibc2.34-node22.11.0-abi127/release/2026-12.json')
  t.equal(indexKey({ ...loc, prefix: '' }, 'api', commit, runtime), `api/index/${commit}/linux-arm64-glibc2.34-node22.11.0-abi127.json`, 'a cache at the bucket root')
})

t.test('an entry round-trips through its document', async t => {
  t.same(parseIndexEntry(formatDocument(entry), expect), entry)
  t.same(parseIndexEntry(formatDocument({ ...entry, commit: commit.toUpperCase() }), expect), 'the index entry is about another service or commit', 'written by another agent: lower case only')
})

const bad: [string, unknown, RegExp][] = [
  ['not JSON', 'nope', /not a JSON object/],
  ['another format', { ...entry, format: 2 }, /format 2, this agent reads 1/],
  ['no key', { ...entry, key: 'short' }, /no valid key/],
  ['another service', { ...entry, service: 'web' }, /another service or commit/],
  ['another commit', { ...entry, commit: 'ef'.repeat(20) }, /another service or commit/],
  ['another runtime', { ...entry, runtime: { ...runtime, arch: 'x64' } }, /another runtime/],
  ['no publisher', { ...entry, publishedBy: undefined }, /lacks its branch, date or publisher/],
  ['no archive', { ...entry, archive: 'x' }, /no archive record/],
  ['a bad sha256', { ...entry, archive: { ...entry.archive, sha256: 'zz' } }, /no valid sha256/],
  ['a negative size', { ...entry, archive: { ...entry.archive, bytes: -1 } }, /sizes out of bounds/],
  ['an absurd unpacked size', { ...entry, archive: { ...entry.archive, unpackedBytes: 1e15 } }, /sizes out of bounds/],
  ['too many entries', { ...entry, archive: { ...entry.archive, entries: 5_000_000 } }, /sizes out of bounds/],
  ['an object of its own choosing', { ...entry, archive: { ...entry.archive, object: 'releases/stage/api/archives/x.tar.gz' } }, /names an unexpected object/],
]
for (const [name, doc, re] of bad) {
  t.test(`an entry with ${name} is refused with a reason`, async t => {
    t.match(parseIndexEntry(typeof doc === 'string' ? doc : JSON.stringify(doc), expect), re)
  })
}

t.test('branch pointer: round trip, and each wrong form', async t => {
  const p = { format: 1 as const, service: 'api', branch: 'main', commit, key, publishedAt: '2026-12-01T00:00:00.000Z' }
  t.same(parseBranchPointer(formatDocument(p), { service: 'api', branch: 'main' }), p)
  t.match(parseBranchPointer('[]', { service: 'api', branch: 'main' }), /not a JSON object/)
  t.match(parseBranchPointer(JSON.stringify({ ...p, format: 0 }), { service: 'api', branch: 'main' }), /format 0/)
  t.match(parseBranchPointer(JSON.stringify(p), { service: 'api', branch: 'test' }), /another service or branch/)
  t.match(parseBranchPointer(JSON.stringify({ ...p, commit: 'HEAD' }), { service: 'api', branch: 'main' }), /no valid commit/)
  t.match(parseBranchPointer(JSON.stringify({ ...p, key: undefined }), { service: 'api', branch: 'main' }), /lacks its key or date/)
})
