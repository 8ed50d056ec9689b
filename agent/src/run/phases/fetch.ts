import { join } from 'node:path'
import { lstatBeneath } from '../../core/beneath.js'
import { ensureDir, exists } from '../../core/dirs.js'
import { ConfigError } from '../../core/errors.js'
import type { Git, GitCredential } from '../../git/client.js'
import { branchNotFound, repoEmpty } from '../../git/errors.js'
import { loadServiceSpec } from '../../config/manifest.js'
import { adoptLegacyRelease, readReleaseRecord, removeStaleRecordTemps, type ReleaseRecord } from '../../releases/records.js'
import { readCurrent, newReleaseId, removeRelease, removeStaleTemps } from '../../releases/releases.js'
import type { Phase } from '../runner.js'
import { need, removeAsService, serviceTree, type RunContext } from '../context.js'
import { ensureServiceUser } from '../../core/service-user.js'
import { serviceReachProblem } from '../service-reach.js'
import type { Settings } from '../../config/settings.js'
import { isWarmPrepared } from '../../releases/warm-pool.js'
import { readGitCredential } from './credential.js'
import { readSecretSourcesInBackground } from './secrets.js'
import { commitFromPointer, openCache, restoreFromCache } from './release-cache.js'

/**
 * The remote branch's commit (ls-remote), then either the live release (same commit, known good:
 * nothing to fetch) or a shallow clone into a new release directory. Nothing live changes here:
 * a commit that cannot be deployed (branch missing, repository empty, manifest gone or invalid)
 * fails with exit 2 and leaves no release behind.
 */
export const fetch: Phase<RunContext> = {
  name: 'fetch',
  async run(ctx) {
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const userName = s.serviceUser ?? 'bootstrap-app'
    // before anything is written (the user included): a root the service user cannot reach would
    // fail deep inside git, blamed on git
    const unreachable = await serviceReachProblem(ctx.seams.exec, userName, p, s.repository)
    if (unreachable) throw unreachable
    const user = await ensureServiceUser(ctx.seams.exec, userName, { create: true })
    ctx.user = user
    if (user.created) ctx.log.info({ user: user.name, uid: user.uid }, 'created service user')
    const owner = user.switchTo
    // root's own directories stay root's (records and markers live there); the service user gets
    // its releases, logs and home, and nothing root keeps is inside them
    const agent = owner ? { uid: 0, gid: 0 } : undefined
    await ensureDir(p.serviceDir, 0o755, agent)
    await ensureDir(p.releasesDir, 0o755, owner)
    await ensureDir(p.appLogDir, 0o750, owner)
    await ensureDir(p.stateDir, 0o755, agent)
    await ensureDir(p.home, 0o700, owner)
    await removeStaleTemps(p.serviceDir)
    await removeStaleRecordTemps(p.releaseRecords)

    const source = ctx.seams.secrets(s)
    // the secret values are read while git works; the `secrets` phase awaits them
    readSecretSourcesInBackground(ctx)
    if (s.gitCredentialSecret) ctx.credential = await readGitCredential(source, s.gitCredentialSecret, ctx.scrubber)
    const git = ctx.seams.git(s)
    // the S3 client loads while git asks the remote
    const opening = openCache(ctx)
    opening.catch(() => undefined)
    // the remote's answer; when it cannot be reached at all, the release cache's branch pointer
    let gitError: unknown
    const head = await git.headOf(s.repository, s.branch, ctx.credential).catch(async (e: unknown) => {
      gitError = e
      return commitFromPointer(ctx, await opening, e)
    })
    const cache = await opening
    if (head === undefined) throw await missingBranch(git, s, ctx.credential)
    ctx.remoteCommit = head

    ctx.liveRelease = await readCurrent(p.serviceDir)
    const liveDir = ctx.liveRelease && join(p.releasesDir, ctx.liveRelease)
    const liveMeta = ctx.liveRelease ? await liveRecord(ctx, ctx.liveRelease) : undefined
    // a release a warm-pool run prepared is reused too (releases/warm-pool.ts); a branch that moved meanwhile is not
    const prepared = liveMeta !== undefined && !liveMeta.good && (await isWarmPrepared(p.serviceDir, liveMeta.id))
    if (liveDir && (liveMeta?.good || prepared) && liveMeta.commit === head) {
      ctx.spec = await loadServiceSpec(serviceTree(ctx, liveDir), s.manifestFile, s.service)
      ctx.release = { id: liveMeta.id, dir: liveDir, serviceDir: join(liveDir, ctx.spec.path), commit: head, reused: true }
      return { status: 'skipped', detail: `commit ${head.slice(0, 12)} is already ${prepared ? 'prepared (warm pool)' : 'live'} (${liveMeta.id})` }
    }

    const id = newReleaseId(ctx.seams.now(), head, ctx.liveRelease)
    // left by a failed attempt within the same second: it was never good, so it can go
    if (await exists(join(p.releasesDir, id))) await removeRelease(p, id, removeAsService(ctx))
    const dir = join(p.releasesDir, id)
    const restored = cache ? await restoreFromCache(ctx, cache, id, head) : undefined
    if (restored) {
      await refuseRemovedManifest(ctx, id, liveDir, restored.dir, head)
      return { detail: restored.detail }
    }
    // a commit from the branch pointer exists only in the cache: without it, the remote's failure stands
    if (gitError !== undefined) throw gitError
    const { commit } = await git.cloneBranch(s.repository, s.branch, { dir, ...(owner ?? {}) }, ctx.credential)
    if (commit !== head) {
      // the branch moved between ls-remote and clone: name the release after what we got
      ctx.log.info({ lsRemote: head, cloned: commit }, 'branch moved during fetch; deploying the cloned commit')
      ctx.remoteCommit = commit
    }
    try {
      await refuseRemovedManifest(ctx, id, liveDir, dir, commit)
      ctx.spec = await loadServiceSpec(serviceTree(ctx, dir), s.manifestFile, s.service)
    } catch (e) {
      // a commit that cannot be deployed leaves no release behind (rollback only knows ctx.release);
      // should the removal fail, the leftover was never good and cleanup prunes it later
      await removeRelease(p, id, removeAsService(ctx)).catch(() => undefined)
      throw e
    }
    ctx.release = { id, dir, serviceDir: join(dir, ctx.spec.path), commit, reused: false, origin: 'source' }
    return { detail: `cloned ${s.branch} @ ${commit.slice(0, 12)} into ${id}` }
  },
}

/** MANIFEST_MISSING (below) for a new release, which is then removed: it can never go live. */
const refuseRemovedManifest = async (ctx: RunContext, id: string, liveDir: string | undefined, dir: string, commit: string) => {
  const s = need(ctx.settings, 'settings')
  if (liveDir && (await lstatBeneath(liveDir, s.manifestFile)) && !(await lstatBeneath(dir, s.manifestFile))) {
    await removeRelease(need(ctx.paths, 'paths'), id, removeAsService(ctx)).catch(() => undefined)
    throw manifestRemoved(s, commit, ctx.liveRelease ?? '')
  }
}

/**
 * The agent's record of the live release; for a release an earlier agent deployed (its record
 * was kept inside the release, where the service user could rewrite it) the previous run's
 * state.json is the evidence, or there is no record (releases/records.ts adoptLegacyRelease).
 */
const liveRecord = async (ctx: RunContext, live: string): Promise<ReleaseRecord | undefined> => {
  const s = need(ctx.settings, 'settings')
  const p = need(ctx.paths, 'paths')
  const record = await readReleaseRecord(p.releaseRecords, live)
  if (record) return record
  const adopted = await adoptLegacyRelease(p.releaseRecords, live, ctx.previousRun, s.service)
  if (adopted) ctx.log.info({ release: live, from: adopted.adoptedFrom }, `adopted live release ${live} of an earlier agent version: its record now lives in ${p.releaseRecords}`)
  else ctx.log.warn({ release: live }, `live release ${live} has no record the agent can trust (an earlier agent kept it inside the release): it is not a rollback target, and this run deploys a fresh release`)
  return adopted
}

/** Where the branch name came from, and how to pick another, for the branch-not-found message. */
const branchOrigin = (s: Settings): { origin: string; fix: string } => {
  switch (s.branchSource) {
    case 'branch-map':
      return {
        origin: `environment "${s.environment}" in the branch map`,
        fix: `map environment "${s.environment}" to an existing branch (--branch-map / BOOTSTRAP_BRANCH_MAP), or set a ${s.tagKeys.branch} tag`,
      }
    case 'tag':
      return { origin: `the ${s.tagKeys.branch} tag`, fix: `fix the ${s.tagKeys.branch} tag` }
    case 'flag':
      return { origin: '--branch', fix: 'fix --branch' }
    case 'env':
      return { origin: 'BOOTSTRAP_BRANCH', fix: 'fix BOOTSTRAP_BRANCH' }
  }
}

/** The branch is not on the remote: say which branches are (none at all: an empty repository). */
const missingBranch = async (git: Git, s: Settings, cred: GitCredential | undefined) => {
  const branches = await git.branches(s.repository, cred)
  if (branches.length === 0) return repoEmpty(s.repository, s.branch)
  return branchNotFound(s.repository, s.branch, { ...branchOrigin(s), branches: branches.sort() })
}

/**
 * The manifest is optional, but one that disappears from a service deployed with it is a mistake
 * far more often than a choice: the defaults (repository root, npm start, PM2-online check) would
 * replace its start command, env and health check, and a rollback could not restore them.
 */
const manifestRemoved = (s: Settings, commit: string, live: string) =>
  new ConfigError(
    `${s.manifestFile} is missing at commit ${commit.slice(0, 12)} of branch "${s.branch}", but the live release ${live} was deployed with one: expected the manifest at the repository root`,
    `restore ${s.manifestFile} and push; to run on the defaults on purpose, commit a manifest that declares the service without fields: {"version":1,"services":{"${s.service}":{}}}`,
    'MANIFEST_MISSING',
  )
