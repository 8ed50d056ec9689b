import { join } from 'node:path'
import { ensureDir, exists } from '../dirs.js'
import { ConfigError } from '../errors.js'
import { loadServiceSpec } from '../manifest.js'
import { readCurrent, readReleaseMeta, releaseId, removeRelease, removeStaleTemps } from '../releases.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../run-context.js'
import { ensureServiceUser } from '../service-user.js'
import { readGitCredential } from './credential.js'

/**
 * The remote branch's commit (ls-remote), then either the live release (same commit, known good:
 * nothing to fetch) or a shallow clone into a new release directory. Nothing live changes here.
 */
export const fetch: Phase<RunContext> = {
  name: 'fetch',
  async run(ctx) {
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const user = await ensureServiceUser(ctx.seams.exec, s.serviceUser ?? 'bootstrap-app', { create: true })
    ctx.user = user
    if (user.created) ctx.log.info({ user: user.name, uid: user.uid }, 'created service user')
    const owner = user.switchTo
    await ensureDir(p.serviceDir, 0o755)
    await ensureDir(p.releasesDir, 0o755, owner)
    await ensureDir(p.appLogDir, 0o750, owner)
    await ensureDir(p.stateDir, 0o755)
    await ensureDir(p.home, 0o700, owner)
    await removeStaleTemps(p.serviceDir)

    const source = ctx.seams.secrets(s)
    if (s.gitCredentialSecret) ctx.credential = await readGitCredential(source, s.gitCredentialSecret, ctx.scrubber)
    const git = ctx.seams.git(s)
    const head = await git.headOf(s.repository, s.branch, ctx.credential)
    if (head === undefined) {
      throw new ConfigError(`branch "${s.branch}" does not exist in ${s.repository}`, `push the branch, or fix the environment -> branch map / ${s.tagKeys.branch} tag`, 'GIT_BRANCH_NOT_FOUND')
    }
    ctx.remoteCommit = head

    ctx.liveRelease = await readCurrent(p.serviceDir)
    const liveDir = ctx.liveRelease && join(p.releasesDir, ctx.liveRelease)
    const liveMeta = liveDir ? await readReleaseMeta(liveDir) : undefined
    if (liveDir && liveMeta?.good && liveMeta.commit === head) {
      ctx.spec = await loadServiceSpec(liveDir, s.manifestFile, s.service)
      ctx.release = { id: liveMeta.id, dir: liveDir, serviceDir: join(liveDir, ctx.spec.path), commit: head, reused: true }
      return { status: 'skipped', detail: `commit ${head.slice(0, 12)} is already live (${liveMeta.id})` }
    }

    const id = releaseId(ctx.seams.now(), head)
    // left by a failed attempt within the same second: it was never good, so it can go
    if (id !== ctx.liveRelease && (await exists(join(p.releasesDir, id)))) await removeRelease(p.serviceDir, id)
    const dir = join(p.releasesDir, id)
    const { commit } = await git.cloneBranch(s.repository, s.branch, { dir, ...(owner ?? {}) }, ctx.credential)
    if (commit !== head) {
      // the branch moved between ls-remote and clone: name the release after what we got
      ctx.log.info({ lsRemote: head, cloned: commit }, 'branch moved during fetch; deploying the cloned commit')
      ctx.remoteCommit = commit
    }
    ctx.spec = await loadServiceSpec(dir, s.manifestFile, s.service)
    ctx.release = { id, dir, serviceDir: join(dir, ctx.spec.path), commit, reused: false }
    return { detail: `cloned ${s.branch} @ ${commit.slice(0, 12)} into ${id}` }
  },
}
