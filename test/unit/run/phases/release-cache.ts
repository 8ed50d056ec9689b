/**
 * run/phases/release-cache.ts: the cache inside a run, with an in-memory CacheStore. The branch
 * pointer stands in for the remote only when git could not reach it at all, the fallback is on
 * and a usable pointer exists; otherwise git's own error stands. The work directory is emptied
 * under the run lock; a miss and an unusable entry become the state's words and a warning. (A
 * hit runs the archive worker: test/integration/release-cache.ts.)
 */
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import t, { type Test } from 'tap'
import { resolveSettings } from '../../../../agent/src/config/settings.js'
import { AgentError } from '../../../../agent/src/core/errors.js'
import { pathsFor } from '../../../../agent/src/core/paths.js'
import { currentRuntime } from '../../../../agent/src/releases/cache-key.js'
import { indexKey, pointerKey } from '../../../../agent/src/releases/cache-index.js'
import type { RunContext, Seams } from '../../../../agent/src/run/context.js'
import { commitFromPointer, openCache, restoreFromCache } from '../../../../agent/src/run/phases/release-cache.js'
import { createScrubber } from '../../../../agent/src/secrets/redact.js'
import { memoryStore, type MemoryStore } from '../../../helpers/memory-store.js'
import { rejected } from '../../../helpers/thrown.js'

const unused = (what: string) => (): never => {
  throw new Error(`${what} used`)
}
const COMMIT = 'ab'.repeat(20)
const unreachable = new AgentError('git could not reach branch "stage" of "https://git.example/app.git": Connection refused', { code: 'GIT_UNREACHABLE', remedy: 'x', retryable: true })

const context = async (t: Test, store: MemoryStore | undefined, flags: Record<string, string> = {}) => {
  const root = t.testdir()
  const settings = resolveSettings({ flags: { root, 'release-cache': 's3://fleet/releases/{environment}', ...flags }, env: {}, agentEnv: {}, tags: { Service: 'app', Environment: 'stage', Repository: 'https://git.example/app.git' }, mode: 'aws' })
  const lines: { level: number; msg: string; [k: string]: unknown }[] = []
  const log = pino({ level: 'info' }, new Writable({ write(c: Buffer, _e, cb) { lines.push(JSON.parse(c.toString())); cb() } }))
  const seams: Seams = {
    exec: { run: unused('exec') }, identity: { identify: unused('identity') }, git: unused('git'), secrets: unused('secrets'), pm2: unused('pm2'),
    hook: unused('hook'), reportSink: unused('reportSink'), cacheStore: async () => store, now: () => new Date('2026-12-01T00:00:00Z'),
  }
  const ctx: RunContext = { seams, log, scrubber: createScrubber(), input: { flags: {}, env: {}, agentEnv: {}, mode: 'aws' }, settings, paths: pathsFor(root, 'app'), warmPool: 'Warmed:Stopped',
    user: { name: 'me', uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, switchTo: undefined, created: false } }
  return { ctx, lines }
}

const pointerObject = (s: { releaseCache?: { bucket: string; prefix: string; url: string } | undefined }) => {
  if (!s.releaseCache) throw new Error('no cache')
  return pointerKey(s.releaseCache, 'app', 'stage', currentRuntime())
}

t.test('openCache: none without a store; with one, the root-only work directory, emptied of what a killed run left', async t => {
  const none = await context(t, undefined)
  t.equal(await openCache(none.ctx), undefined)
  t.equal(none.ctx.cache, undefined)
  const store = memoryStore()
  const { ctx } = await context(t, store)
  const work = ctx.paths?.cacheWorkDir ?? ''
  await mkdir(work, { recursive: true })
  await writeFile(join(work, 'restore-0a1b2c.tar.gz'), 'half a download')
  t.equal(await openCache(ctx), store)
  t.same(await readdir(work), [])
  t.equal((await stat(work)).mode & 0o777, 0o700)
  t.same(ctx.cache, { location: store.location })
})

/** a run's context whose cache holds a branch pointer to COMMIT */
const withPointer = async (t: Test) => {
  const store = memoryStore()
  const { ctx, lines } = await context(t, store)
  const s = ctx.settings
  if (!s) throw new Error('no settings')
  await openCache(ctx)
  store.objects.set(pointerObject(s), Buffer.from(JSON.stringify({ format: 1, service: 'app', branch: 'stage', commit: COMMIT, key: 'c'.repeat(64), publishedAt: '2026-11-30T00:00:00Z' })))
  return { store, ctx, lines, s }
}

t.test('commitFromPointer: the last commit published healthy on the branch, when git could not reach its remote', async t => {
  const { store, ctx, lines } = await withPointer(t)
  t.equal(await commitFromPointer(ctx, store, unreachable), COMMIT)
  t.match(ctx.cache?.commitFromPointer, /^branch pointer s3:\/\/fleet\/releases\/stage\/app\/branches\/.*\/stage\.json \(published 2026-11-30T00:00:00Z\); the git remote could not be reached: git could not reach/)
  t.match(lines.find(l => /git remote unreachable: deploying abababababab/.test(l.msg)), { level: 40, commit: COMMIT, gitError: 'GIT_UNREACHABLE' })
  const timeout = new AgentError('git gave no answer', { code: 'GIT_TIMEOUT', remedy: 'x' })
  t.equal(await commitFromPointer(ctx, store, timeout), COMMIT, 'a remote that does not answer counts as unreachable')
})

t.test("commitFromPointer: git's error stands otherwise", async t => {
  const { store, ctx, lines, s } = await withPointer(t)
  const auth = new AgentError('git could not authenticate', { code: 'GIT_AUTH_FAILED', remedy: 'x' })
  t.equal(await rejected(() => commitFromPointer(ctx, store, auth)), auth, 'a refused credential is an answer of the remote')
  t.equal(await rejected(() => commitFromPointer(ctx, undefined, unreachable)), unreachable, 'no cache configured')
  const off = await context(t, store, { 'release-cache-fallback': 'off' })
  t.equal(await rejected(() => commitFromPointer(off.ctx, store, unreachable)), unreachable, 'the fallback turned off')
  store.objects.delete(pointerObject(s))
  t.equal(await rejected(() => commitFromPointer(ctx, store, unreachable)), unreachable, 'no pointer')
  t.match(lines.at(-1), { msg: 'release cache: no usable branch pointer', reason: 'there is none' })
  store.objects.set(pointerObject(s), Buffer.from('{"format":1,"service":"app","branch":"stage","commit":"HEAD"}'))
  t.equal(await rejected(() => commitFromPointer(ctx, store, unreachable)), unreachable, 'a pointer that does not parse')
  store.fail('getText', 'AWS_UNREACHABLE')
  t.equal(await rejected(() => commitFromPointer(ctx, store, unreachable)), unreachable, 'S3 unreachable as well')
  t.match(lines.at(-1), { msg: 'release cache: the branch pointer could not be read either', reason: /AWS_UNREACHABLE/ })
  t.equal(ctx.cache?.commitFromPointer, undefined)
})

t.test('restoreFromCache: a miss and an unusable entry are the state\'s words, a warning for the latter; nothing is extracted', async t => {
  const store = memoryStore()
  const { ctx, lines } = await context(t, store)
  const s = ctx.settings
  if (!s?.releaseCache) throw new Error('no cache')
  await openCache(ctx)
  t.equal(await restoreFromCache(ctx, store, '20261201T000000Z-abababababab', COMMIT), undefined)
  const index = indexKey(s.releaseCache, 'app', COMMIT, currentRuntime())
  t.same(ctx.cache, { location: store.location, lookup: `miss: s3://fleet/${index}` })
  store.objects.set(index, Buffer.from('{"format":7}'))
  t.equal(await restoreFromCache(ctx, store, '20261201T000000Z-abababababab', COMMIT), undefined)
  t.same(ctx.cache, { location: store.location, lookup: `unusable: the index entry has format 7, this agent reads 1 (s3://fleet/${index})`, replaceEntry: true })
  t.match(lines.at(-1), { level: 40, msg: 'release cache: entry not used; deploying from source', object: `s3://fleet/${index}`, reason: /format 7/ })
  t.equal(ctx.release, undefined)
})
