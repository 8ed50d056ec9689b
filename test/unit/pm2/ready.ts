/**
 * preparePm2: begun once (in the background during install, or by start), awaited by start; a
 * failure reaches whoever awaits it and is never an unhandled rejection. Our own seams faked.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t, { type Test } from 'tap'
import { pathsFor } from '../../../agent/src/core/paths.js'
import type { Pm2 } from '../../../agent/src/pm2/cli.js'
import { preparePm2, preparePm2InBackground } from '../../../agent/src/pm2/ready.js'
import { createScrubber } from '../../../agent/src/secrets/redact.js'
import type { RunContext, Seams } from '../../../agent/src/run/context.js'
import { resolveSettings } from '../../../agent/src/config/settings.js'

const unused = (what: string) => (): never => {
  throw new Error(`${what} used`)
}

/** A Pm2 seam that counts ensureDaemon calls; `fail` makes them reject. */
const fakePm2 = (fail?: Error) => {
  const calls = { ensureDaemon: 0 }
  let release: () => void = () => undefined
  const gate = new Promise<void>(resolve => (release = resolve))
  const pm2: Pm2 = {
    list: unused('list'), start: unused('start'), reload: unused('reload'), delete: unused('delete'), save: unused('save'), kill: unused('kill'), stop: unused('stop'),
    async ensureDaemon() {
      calls.ensureDaemon++
      await gate
      if (fail) throw fail
    },
  }
  return { pm2, calls, release }
}

const context = async (t: Test, pm2: Pm2): Promise<RunContext> => {
  // not `/`: ensurePm2Startup applies on an instance only, so only the daemon is made ready here
  const root = await mkdtemp(join(tmpdir(), 'pm2-ready-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const settings = resolveSettings({ flags: { root }, env: {}, agentEnv: {}, tags: { Service: 'app', Environment: 'stage', Repository: 'file:///r.git' }, mode: 'aws' })
  const seams: Seams = {
    exec: { run: unused('exec') }, identity: { identify: unused('identity') }, git: unused('git'), secrets: unused('secrets'),
    pm2: () => pm2, hook: unused('hook'), reportSink: unused('reportSink'), cacheStore: async () => undefined, now: () => new Date('2026-11-24T05:00:00Z'),
  }
  return { seams, log: pino({ level: 'silent' }), scrubber: createScrubber(), input: { flags: {}, env: {}, agentEnv: {}, mode: 'aws' }, settings, paths: pathsFor(root, 'app') }
}

t.test('begun in the background, awaited later: the daemon is made ready once', async t => {
  const f = fakePm2()
  const ctx = await context(t, f.pm2)
  preparePm2InBackground(ctx)
  t.equal(f.calls.ensureDaemon, 0, 'not before the event loop turns: the caller (install) goes on at once')
  const later = preparePm2(ctx)
  f.release()
  t.equal(await later, undefined, 'no systemd unit outside an instance')
  t.equal(await preparePm2(ctx), undefined)
  t.equal(f.calls.ensureDaemon, 1, 'one daemon start, however many ask')
  t.equal(ctx.pm2, f.pm2, 'the run\'s Pm2 seam is the one made ready')
})

t.test('a failure in the background is start\'s to report, and no unhandled rejection', async t => {
  const f = fakePm2(new Error('pm2 ping failed (exit 1): EACCES'))
  const ctx = await context(t, f.pm2)
  const unhandled: unknown[] = []
  const onUnhandled = (e: unknown) => unhandled.push(e)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => void process.off('unhandledRejection', onUnhandled))
  preparePm2InBackground(ctx)
  f.release()
  // let the rejection happen with nobody awaiting it yet (install still running)
  await new Promise(resolve => setTimeout(resolve, 20))
  t.same(unhandled, [], 'nothing unhandled while install runs')
  await t.rejects(preparePm2(ctx), { message: /pm2 ping failed \(exit 1\): EACCES/ }, 'start awaits it and fails with it')
  t.equal(f.calls.ensureDaemon, 1, 'not retried behind start\'s back')
})
