import { join } from 'node:path'
import { copyNodeModules, installKey, npmCi, readInstallInputs } from '../../releases/install.js'
import { preparePm2InBackground } from '../../pm2/ready.js'
import { readReleaseRecord } from '../../releases/records.js'
import { listReleases } from '../../releases/releases.js'
import type { Phase } from '../runner.js'
import { need, removeAsService, serviceTree, type RunContext } from '../context.js'

/** `npm ci`, or node_modules hard-linked from the newest good release with the same install key. */
export const install: Phase<RunContext> = {
  name: 'install',
  async run(ctx) {
    const rel = need(ctx.release, 'release')
    const spec = need(ctx.spec, 'spec')
    if (rel.reused) return { status: 'skipped', detail: 'release already live' }
    if (rel.origin === 'cache') return { status: 'skipped', detail: 'node_modules came with the release cache archive' }
    if (!spec.hasPackageJson) return { status: 'skipped', detail: 'no package.json' }
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    // read before any code of the release runs; `build` records this key, not what is on disk then
    const inputs = await readInstallInputs(serviceTree(ctx, rel.dir), spec.path)
    const key = inputs && installKey(inputs)
    if (key) ctx.installKey = key
    if (key) {
      for (const id of (await listReleases(p.serviceDir)).reverse()) {
        if (id === rel.id) continue
        const record = await readReleaseRecord(p.releaseRecords, id)
        if (!record?.good || record.installKey !== key) continue
        // same lockfile + same Node ABI = what npm ci would produce (a lockfile without
        // dependencies may have produced no node_modules at all: nothing to copy then)
        try {
          await copyNodeModules(ctx.seams.exec, { dir: join(p.releasesDir, id), path: spec.path }, rel.serviceDir, ctx.user?.switchTo)
          return { status: 'skipped', detail: `lockfile and Node ABI unchanged: node_modules reused from ${id}` }
        } catch (e) {
          // hard links can be refused (files of another owner under fs.protected_hardlinks, a full
          // disk): npm ci still gives the same tree, only slower
          ctx.log.warn({ from: id, error: e instanceof Error ? e.message : String(e) }, 'reusing node_modules failed; running npm ci')
          await removeAsService(ctx)(join(rel.serviceDir, 'node_modules'))
          break
        }
      }
    }
    // PM2's daemon spawn (~0.5 s, a first boot's) runs alongside npm ci; `start` awaits it
    if (!ctx.warmPool) preparePm2InBackground(ctx)
    const log = ctx.log.child({ phase: 'install', cmd: 'npm ci' })
    await npmCi({
      exec: ctx.seams.exec,
      dir: rel.serviceDir,
      lockfile: inputs?.lockfile,
      home: p.home,
      user: ctx.user?.switchTo,
      timeoutMs: s.installTimeoutMs,
      onLine: (stream, line) => log.debug({ stream }, line),
    })
    return { detail: 'npm ci' }
  },
}
