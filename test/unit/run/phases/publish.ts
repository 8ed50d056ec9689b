/**
 * run/phases/publish.ts: what it leaves alone (no cache, a warm-pool prepare, a release that did
 * not pass its health gate, one from the cache, one published already), what it says in the
 * state, and a failure that is the phase's (the run is not failed by it: commands/run.ts). The
 * publication itself, with the archive worker: test/unit/releases/cache-publish.ts and
 * test/integration/release-cache.ts.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pino from 'pino'
import t, { type Test } from 'tap'
import { loadServiceSpec } from '../../../../agent/src/config/manifest.js'
import { resolveSettings } from '../../../../agent/src/config/settings.js'
import { pathsFor } from '../../../../agent/src/core/paths.js'
import { readReleaseRecord, recordRelease, type ReleaseRecord } from '../../../../agent/src/releases/records.js'
import { releaseId } from '../../../../agent/src/releases/releases.js'
import type { RunContext, Seams } from '../../../../agent/src/run/context.js'
import { publish } from '../../../../agent/src/run/phases/publish.js'
import { createScrubber } from '../../../../agent/src/secrets/redact.js'
import { memoryStore, type MemoryStore } from '../../../helpers/memory-store.js'
import { rejected } from '../../../helpers/thrown.js'

const unused = (what: string) => (): never => {
  throw new Error(`${what} used`)
}
const COMMIT = 'cd'.repeat(20)

const context = async (t: Test, o: { store?: MemoryStore; cache?: boolean; meta?: Partial<ReleaseRecord>; warmPool?: string } = {}) => {
  const root = t.testdir()
  const flags: Record<string, string> = { root, ...(o.cache === false ? {} : { 'release-cache': 's3://fleet/releases/stage' }) }
  const settings = resolveSettings({ flags, env: {}, agentEnv: {}, tags: { Service: 'app', Environment: 'stage', Repository: 'https://git.example/app.git' }, mode: 'aws' })
  const paths = pathsFor(root, 'app')
  const id = releaseId(new Date('2026-12-01T00:00:00Z'), COMMIT)
  const dir = join(paths.releasesDir, id)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'package.json'), '{"name":"app","version":"1.0.0","main":"server.js"}')
  await writeFile(join(dir, 'server.js'), '')
  await recordRelease(paths.releaseRecords, { id, commit: COMMIT, branch: 'stage', createdAt: '2026-12-01T00:00:00Z', good: true, origin: 'source', ...o.meta })
  const seams: Seams = {
    exec: { run: unused('exec') }, identity: { identify: unused('identity') }, git: unused('git'), secrets: unused('secrets'), pm2: unused('pm2'),
    hook: unused('hook'), reportSink: unused('reportSink'), cacheStore: async () => o.store ?? memoryStore(), now: () => new Date('2026-12-01T01:00:00Z'),
  }
  const ctx: RunContext = {
    seams, log: pino({ level: 'silent' }), scrubber: createScrubber(), input: { flags: {}, env: {}, agentEnv: {}, mode: 'aws' },
    settings, paths, spec: await loadServiceSpec({ dir, owner: process.getuid?.() ?? 0 }, settings.manifestFile, 'app'),
    user: { name: 'me', uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, switchTo: undefined, created: false },
    release: { id, dir, serviceDir: dir, commit: COMMIT, reused: true },
    ...(o.warmPool ? { warmPool: o.warmPool } : {}),
  }
  return ctx
}

t.test('left alone, and the state says why', async t => {
  const cases: [string, Parameters<typeof context>[1], RegExp][] = [
    ['no cache configured', { cache: false }, /^no release cache configured$/],
    ['a warm-pool prepare', { warmPool: 'Warmed:Stopped' }, /^warm pool: no health gate passed yet; published by the run that starts it$/],
    ['a release that did not pass its health gate', { meta: { good: false } }, /has not passed its health gate$/],
    ['a release from the cache', { meta: { origin: 'cache' } }, /came from the release cache$/],
    ['a release published already', { meta: { published: { at: '2026-12-01T00:10:00Z', index: 's3://fleet/x.json' } } }, /is in the release cache \(s3:\/\/fleet\/x\.json\)$/],
  ]
  for (const [name, o, re] of cases) {
    const store = memoryStore()
    const ctx = await context(t, { ...o, store })
    t.match(await publish.run(ctx), { status: 'skipped', detail: re }, name)
    t.same(store.calls, [], `${name}: no S3 call`)
    if (o?.cache !== false) t.match(ctx.cache?.published, re)
  }
})

t.test('published already by another instance: recorded, never looked at again', async t => {
  const store = memoryStore()
  const ctx = await context(t, { store })
  // the other instance's entry for this commit and key (publishRelease looks it up first)
  const { readReleaseCacheKey, currentRuntime } = await import('../../../../agent/src/releases/cache-key.js')
  const { indexKey } = await import('../../../../agent/src/releases/cache-index.js')
  const s = ctx.settings
  const rel = ctx.release
  if (!s?.releaseCache || !rel || !ctx.spec) throw new Error('context')
  const runtime = currentRuntime()
  const key = await readReleaseCacheKey({ dir: rel.dir, owner: process.getuid?.() ?? 0 }, ctx.spec, COMMIT, runtime)
  const index = indexKey(s.releaseCache, 'app', COMMIT, runtime)
  const sha = 'e'.repeat(64)
  store.objects.set(index, Buffer.from(JSON.stringify({
    format: 1, key, service: 'app', commit: COMMIT, branch: 'stage', runtime,
    archive: { object: `releases/stage/app/archives/${key}/${sha}.tar.gz`, sha256: sha, bytes: 10, unpackedBytes: 10, entries: 1 },
    publishedAt: '2026-12-01T00:30:00Z', publishedBy: 'i-0other',
  })))
  t.match(await publish.run(ctx), { status: 'skipped', detail: `published already by i-0other (s3://fleet/${index})` })
  t.same((await readReleaseRecord(ctx.paths?.releaseRecords ?? '', rel.id))?.published, { at: '2026-12-01T01:00:00.000Z', index: `s3://fleet/${index}` })
  t.same(store.calls.map(c => c.method), ['getText'])
})

t.test('a failure is the phase\'s: it throws (the run warns), the state says "not published"', async t => {
  const store = memoryStore()
  store.fail('getText', 'AWS_ACCESS_DENIED')
  const ctx = await context(t, { store })
  t.match(await rejected(() => publish.run(ctx)), { code: 'AWS_ACCESS_DENIED' })
  t.match(ctx.cache?.published, /^not published: AWS s3:GetObject on s3:\/\/fleet\/.* failed: AWS_ACCESS_DENIED$/)
  t.equal((await readReleaseRecord(ctx.paths?.releaseRecords ?? '', ctx.release?.id ?? ''))?.published, undefined)
})
