import { join } from 'node:path'
import { AgentError } from '../../core/errors.js'
import { outputEvidence } from '../../core/evidence.js'
import { recordRelease } from '../../releases/records.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'

/**
 * The manifest's build command (as the service user, no shell, no secrets in its environment),
 * then the release is recorded (releases/records.ts), which makes it complete: only a complete
 * release can become `current`.
 */
export const build: Phase<RunContext> = {
  name: 'build',
  async run(ctx) {
    const rel = need(ctx.release, 'release')
    if (rel.reused) return { status: 'skipped', detail: 'release already live' }
    const spec = need(ctx.spec, 'spec')
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    let detail: string | undefined
    if (spec.build && rel.origin === 'cache') detail = 'build output came with the release cache archive'
    else if (spec.build) {
      const [file, ...args] = spec.build
      const log = ctx.log.child({ phase: 'build', cmd: spec.build.join(' ') })
      const r = await ctx.seams.exec.run(file ?? '', args, {
        cwd: rel.serviceDir,
        env: {
          PATH: `${join(process.execPath, '..')}:${join(rel.serviceDir, 'node_modules/.bin')}:/usr/local/bin:/usr/bin:/bin`,
          HOME: p.home,
          npm_config_cache: join(p.home, '.npm'),
          NODE_ENV: 'production',
          LANG: 'C.UTF-8',
          CI: 'true',
        },
        timeoutMs: s.buildTimeoutMs,
        ...(ctx.user?.switchTo ?? {}),
        onLine: (stream, line) => log.debug({ stream }, line),
      })
      if (r.exitCode !== 0) {
        const tail = ctx.scrubber.scrub((r.stderr || r.stdout).trim().split('\n').slice(-8).join('\n'))
        throw new AgentError(`build command ${JSON.stringify(spec.build)} ${r.timedOut ? 'timed out' : `failed (exit ${r.exitCode})`}:\n${tail}`, {
          code: r.timedOut ? 'BUILD_TIMEOUT' : 'BUILD_FAILED',
          remedy: 'fix the build (run it locally) and push a new commit',
          evidence: outputEvidence('build', `build ${JSON.stringify(spec.build)}`, r, t => ctx.scrubber.scrub(t)),
        })
      }
      detail = spec.build.join(' ')
    }
    // the key `install` read before npm ci and this build ran: what they left on disk is theirs
    await recordRelease(p.releaseRecords, {
      id: rel.id, commit: rel.commit, branch: s.branch, createdAt: ctx.seams.now().toISOString(),
      ...(ctx.installKey ? { installKey: ctx.installKey } : {}),
      ...(rel.origin ? { origin: rel.origin } : {}),
    })
    if (rel.origin === 'cache') return { status: 'skipped', detail: `${detail ?? 'no build command'}; release marked complete` }
    return detail ? { detail } : { status: 'skipped', detail: 'no build command; release marked complete' }
  },
}
