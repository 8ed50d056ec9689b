import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t, { type Test } from 'tap'
import type { InstanceIdentity } from '../../../agent/src/seams/identity.js'
import { loadServiceSpec } from '../../../agent/src/config/manifest.js'
import { pathsFor } from '../../../agent/src/core/paths.js'
import { identify } from '../../../agent/src/run/phases/identify.js'
import { start } from '../../../agent/src/run/phases/start.js'
import { restartPendingFile } from '../../../agent/src/run/phases/switch.js'
import { verify } from '../../../agent/src/run/phases/verify.js'
import type { Pm2 } from '../../../agent/src/pm2/cli.js'
import { createScrubber } from '../../../agent/src/secrets/redact.js'
import { readReleaseRecord, recordRelease } from '../../../agent/src/releases/records.js'
import { releaseId } from '../../../agent/src/releases/releases.js'
import type { RunContext, Seams } from '../../../agent/src/run/context.js'
import { resolveSettings } from '../../../agent/src/config/settings.js'
import {
  clearWarmPrepared, isWarmPrepared, markWarmPrepared, WARM_POOL_DETAIL, warmPoolTarget, warmPreparedFile,
} from '../../../agent/src/releases/warm-pool.js'

const tmp = async (t: Test) => {
  const d = await mkdtemp(join(tmpdir(), 'warm-pool-'))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

t.test('warmPoolTarget: any Warmed:* target state prepares only', async t => {
  const table: [string | undefined, string | undefined][] = [
    ['Warmed:Stopped', 'Warmed:Stopped'],
    ['Warmed:Running', 'Warmed:Running'],
    ['Warmed:Hibernated', 'Warmed:Hibernated'],
    ['Warmed:Terminated', 'Warmed:Terminated'],
    ['InService', undefined],
    ['Pending:Wait', undefined],
    ['Terminated', undefined],
    ['warmed:stopped', undefined],
    ['', undefined],
    [undefined, undefined],
  ]
  for (const [state, want] of table) t.equal(warmPoolTarget(state), want, String(state))
})

t.test('the prepared marker names one release', async t => {
  const dir = await tmp(t)
  const id = releaseId(new Date('2026-11-24T05:00:00Z'), 'a'.repeat(40))
  t.equal(await isWarmPrepared(dir, id), false, 'no marker')
  await markWarmPrepared(dir, id)
  t.equal(await readFile(warmPreparedFile(dir), 'utf8'), `${id}\n`)
  t.equal((await stat(warmPreparedFile(dir))).mode & 0o777, 0o644)
  t.equal(await isWarmPrepared(dir, id), true)
  t.equal(await isWarmPrepared(dir, releaseId(new Date('2026-11-24T05:00:01Z'), 'a'.repeat(40))), false, 'another release is not the prepared one')
  await clearWarmPrepared(dir)
  t.equal(await isWarmPrepared(dir, id), false, 'cleared')
  await clearWarmPrepared(dir)
  t.pass('clearing twice is fine')
  await mkdir(warmPreparedFile(dir))
  await t.rejects(isWarmPrepared(dir, id), { code: 'EISDIR' }, 'an unreadable marker is an error, not "not prepared"')
})

/** Every seam throws: a warm-pool start or verify must touch none of them (nothing starts). */
const unused = (what: string) => (): never => {
  throw new Error(`${what} used in a warm-pool run`)
}
const identity = (lifecycleState: string | undefined): InstanceIdentity => ({
  instanceId: 'i-0123456789abcdef0', region: 'us-east-1', availabilityZone: 'us-east-1a', tags: {}, lifecycleState, source: 'test',
})
const seams = (over: Partial<Seams> = {}): Seams => ({
  exec: { run: unused('exec') },
  identity: { identify: unused('identity') },
  git: unused('git'),
  secrets: unused('secrets'),
  pm2: unused('pm2'),
  hook: unused('hook'),
  reportSink: unused('reportSink'),
  cacheStore: async () => undefined,
  now: () => new Date('2026-11-24T05:00:00Z'),
  ...over,
})

/** A context as the phases before `start` leave it: settings, paths, spec and a complete release. */
const preparedContext = async (t: Test, warmPool: string | undefined, s: Seams = seams()): Promise<RunContext> => {
  const root = await tmp(t)
  const settings = resolveSettings({ flags: { root }, env: {}, agentEnv: {}, tags: { Service: 'app', Environment: 'stage', Repository: 'file:///r.git' }, mode: 'aws' })
  const paths = pathsFor(root, 'app')
  const id = releaseId(new Date('2026-11-24T05:00:00Z'), 'b'.repeat(40))
  const dir = join(paths.releasesDir, id)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'package.json'), '{"name":"app","version":"1.0.0","main":"server.js"}')
  await writeFile(join(dir, 'server.js'), '')
  await recordRelease(paths.releaseRecords, { id, commit: 'b'.repeat(40), branch: 'stage', createdAt: '2026-11-24T05:00:00Z' })
  await writeFile(restartPendingFile(paths.serviceDir), '')
  return {
    seams: s, log: pino({ level: 'silent' }), scrubber: createScrubber(), input: { flags: {}, env: {}, agentEnv: {}, mode: 'aws' },
    ...(warmPool ? { warmPool } : {}),
    settings, paths, spec: await loadServiceSpec({ dir, owner: process.getuid?.() ?? 0 }, settings.manifestFile, 'app'),
    user: { name: 'me', uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, switchTo: undefined, created: false },
    release: { id, dir, serviceDir: dir, commit: 'b'.repeat(40), reused: false },
  }
}

t.test('identify marks a run whose target state is Warmed:* as prepare-only', async t => {
  for (const [state, warm] of [['Warmed:Stopped', true], ['InService', false], [undefined, false]] as const) {
    const ctx: RunContext = { seams: seams({ identity: { identify: async () => identity(state) } }), log: pino({ level: 'silent' }), scrubber: createScrubber(), input: { flags: {}, env: {}, agentEnv: {}, mode: 'aws' } }
    const r = await identify.run(ctx)
    t.equal(ctx.warmPool, warm ? state : undefined, String(state))
    if (warm) t.match(r, { detail: /Warmed:Stopped \(warm pool: prepare only, start nothing\)/ })
    else t.notMatch(r, { detail: /warm pool/ })
  }
})

t.test('a warm-pool run: start and verify start nothing, the release is marked prepared', async t => {
  const ctx = await preparedContext(t, 'Warmed:Stopped')
  const rel = ctx.release
  const p = ctx.paths
  if (!rel || !p) throw new Error('context without release or paths')
  t.same(await start.run(ctx), { status: 'skipped', detail: WARM_POOL_DETAIL }, 'start: skipped, no PM2 call')
  t.equal(ctx.started, undefined)
  t.same(await verify.run(ctx), { status: 'skipped', detail: WARM_POOL_DETAIL }, 'verify: skipped, no PM2 call')
  t.equal(await isWarmPrepared(p.serviceDir, rel.id), true, 'the release is the prepared one')
  t.notOk((await readReleaseRecord(p.releaseRecords, rel.id))?.good, 'not marked good: it never passed a health check')
  t.equal(await readFile(restartPendingFile(p.serviceDir), 'utf8'), '', '.restart-pending stays: the run out of the pool must (re)start it')
  t.equal(ctx.url, undefined, 'no URL')
})

t.test('a healthy run clears the prepared marker (the release is good from then on)', async t => {
  const pm2: Pm2 = {
    list: async () => [{ name: 'app', pmId: 0, pid: 42, status: 'online', restarts: 0, uptimeSince: 0 }],
    start: unused('pm2.start'), reload: unused('pm2.reload'), delete: unused('pm2.delete'), ensureDaemon: unused('pm2.ensureDaemon'),
    stop: unused('pm2.stop'), save: unused('pm2.save'), kill: unused('pm2.kill'),
  }
  const ctx = await preparedContext(t, undefined, seams({ pm2: () => pm2 }))
  const rel = ctx.release
  const p = ctx.paths
  if (!rel || !p) throw new Error('context without release or paths')
  await markWarmPrepared(p.serviceDir, rel.id)
  t.match(await verify.run(ctx), { detail: /online/ })
  t.equal(await isWarmPrepared(p.serviceDir, rel.id), false, 'marker removed')
  t.equal((await readReleaseRecord(p.releaseRecords, rel.id))?.good, true, 'the release is good')
})
