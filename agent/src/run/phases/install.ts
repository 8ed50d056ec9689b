import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { copyNodeModules, npmCi, readInstallKey } from '../../releases/install.js'
import { preparePm2InBackground } from '../../pm2/ready.js'
import { listReleases, readReleaseMeta } from '../../releases/releases.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'

/** `npm ci`, or node_modules hard-linked from the newest good release with the same install key. */
export const install: Phase<RunContext> = {
  name: 'install',
  async run(ctx) {
    const rel = need(ctx.release, 'release')
    const spec = need(ctx.spec, 'spec')
    if (rel.reused) return { status: 'skipped', detail: 'release already live' }
    if (!spec.hasPackageJson) return { status: 'skipped', detail: 'no package.json' }
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const key = await readInstallKey(rel.serviceDir)
    if (key) {
      for (const id of (await listReleases(p.serviceDir)).reverse()) {
        if (id === rel.id) continue
        const dir = join(p.releasesDir, id)
        const meta = await readReleaseMeta(dir)
        if (!meta?.good || meta.installKey !== key) continue
        // same lockfile + same Node ABI = what npm ci would produce (a lockfile without
        // dependencies may have produced no node_modules at all: nothing to copy then)
        try {
          await copyNodeModules(ctx.seams.exec, join(dir, spec.path), rel.serviceDir, ctx.user?.switchTo)
          return { status: 'skipped', detail: `lockfile and Node ABI unchanged: node_modules reused from ${id}` }
        } catch (e) {
          // hard links can be refused (files of another owner under fs.protected_hardlinks, a full
          // disk): npm ci still gives the same tree, only slower
          ctx.log.warn({ from: id, error: e instanceof Error ? e.message : String(e) }, 'reusing node_modules failed; running npm ci')
          await rm(join(rel.serviceDir, 'node_modules'), { recursive: true, force: true })
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
      home: p.home,
      user: ctx.user?.switchTo,
      timeoutMs: s.installTimeoutMs,
      onLine: (stream, line) => log.debug({ stream }, line),
    })
    return { detail: 'npm ci' }
  },
}
