import { readFile } from 'node:fs/promises'
import { writeFileAtomic } from '../../core/atomic-write.js'
import { buildEcosystem } from '../../pm2/ecosystem.js'
import { errnoCode } from '../../core/errors.js'
import { agentFile } from '../../secrets/agent-files.js'
import { dumpHolds } from '../../pm2/cli.js'
import { preparePm2 } from '../../pm2/ready.js'
import type { ServiceSpec } from '../../config/manifest.js'
import type { Paths } from '../../core/paths.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'
import { WARM_POOL_DETAIL } from '../../releases/warm-pool.js'

/**
 * PM2: (re)write the ecosystem file, then start the app (new, or its definition changed) or
 * reload it (new release or new secrets), and `pm2 save` so PM2's resurrection at reboot brings
 * back exactly this (skipped when the dump already holds this definition: pm2/cli.ts `dumpHolds`). An app already online with nothing changed is left alone.
 *
 * Before the first PM2 call (which would fork the daemon into the caller's control group), the
 * daemon is put under its own unit, bootstrap-pm2.service, which also resurrects the saved apps
 * at boot (pm2/startup.ts; on an instance only).
 */
/** The ecosystem file's text for a service spec on this instance (rollback writes the restored
 * release's back with it). */
export const ecosystemFor = (spec: ServiceSpec, p: Pick<Paths, 'current' | 'envFile' | 'appLogDir'>): string =>
  `${JSON.stringify(buildEcosystem({
    spec, current: p.current, envFile: p.envFile, appLogDir: p.appLogDir,
    preload: agentFile('env-preload.js'), wrapper: agentFile('run-with-env.js'), npmBin: 'npm',
  }), null, 2)}\n`

export const start: Phase<RunContext> = {
  name: 'start',
  async run(ctx) {
    // a warm-pool instance must not serve: the run that takes it out of the pool starts it
    if (ctx.warmPool) return { status: 'skipped', detail: WARM_POOL_DETAIL }
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const spec = need(ctx.spec, 'spec')
    const pm2 = (ctx.pm2 ??= ctx.seams.pm2(s, p, ctx.user))
    // begun during npm ci on a first boot (pm2/ready.ts); otherwise done here
    const early = ctx.pm2Ready !== undefined
    const resurrection = await preparePm2(ctx)
    const also = `${resurrection ? `; ${resurrection}` : ''}${early ? '; PM2 made ready during install' : ''}`
    const eco = ecosystemFor(spec, p)
    let previous: string | undefined
    try {
      previous = await readFile(p.ecosystem, 'utf8')
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e
    }
    if (previous !== eco) await writeFileAtomic(p.ecosystem, eco, { mode: 0o644 })
    const procs = (await pm2.list()).filter(x => x.name === spec.name)
    let detail: string
    if (procs.length === 0 || previous !== eco) {
      await pm2.start(p.ecosystem, spec.name, procs.length > 0)
      detail = procs.length === 0 ? 'started' : 'definition changed: recreated'
    } else if (ctx.switched || procs.some(x => x.status !== 'online')) {
      const wasOnline = procs.every(x => x.status === 'online')
      await pm2.reload(p.ecosystem)
      ctx.started = true
      // the same definition, online before and after: the saved dump is still exactly this
      if (wasOnline && (await dumpHolds({ home: p.home, pm2Home: p.pm2Home, owner: need(ctx.user, 'user').uid }, p.ecosystem, spec.name))) {
        return { detail: `${spec.name} reloaded; PM2's dump already holds it (PM2_HOME=${p.pm2Home})${also}` }
      }
      detail = 'reloaded'
    } else {
      return { status: 'skipped', detail: `already online, nothing changed${also}` }
    }
    ctx.started = true
    await pm2.save()
    return { detail: `${spec.name} ${detail} (PM2_HOME=${p.pm2Home})${also}` }
  },
}
