/**
 * `bootstrap-agent plan` (and `run --dry-run`): identify + resolve, the remote commit via
 * ls-remote, the manifest from a shallow clone in a temporary directory, and what run would do.
 * Writes nothing outside that temporary directory, makes no mutating call, reads no secret value.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isAgentError, messageOf } from '../core/errors.js'
import { buildEcosystem } from '../pm2/ecosystem.js'
import { agentFile } from '../secrets/agent-files.js'
import { loadServiceSpec, type RepoTree, type ServiceSpec } from '../config/manifest.js'
import { currentRuntime, readReleaseCacheKey } from '../releases/cache-key.js'
import { indexKey } from '../releases/cache-index.js'
import { readIndexEntry } from '../releases/cache-restore.js'
import { pathsFor } from '../core/paths.js'
import { PHASE_NAMES } from '../run/pipeline.js'
import { readReleaseRecord } from '../releases/records.js'
import { readCurrent } from '../releases/releases.js'
import type { Seams } from '../run/context.js'
import { resolveWithAgentConfig } from '../config/resolve-settings.js'
import { serviceReachProblem } from '../run/service-reach.js'
import { warmPoolTarget } from '../releases/warm-pool.js'
import type { Settings, SettingsInput } from '../config/settings.js'
import { parameterKey, secretIdsToFetch } from '../secrets/source.js'

export interface Plan {
  service: string
  environment: string
  branch: string
  branchSource: string
  repository: string
  commit: string | null
  commitNote?: string
  live: { release: string | null; commit: string | null }
  action: string
  root: string
  agentConfig: string | null
  serviceUser: string | undefined
  /** null when the service user reaches everything it must (or the agent is not root) */
  serviceUserReach: { problem: string; remedy: string } | null
  instance: { id: string; source: string; lifecycleState: string | null }
  lifecycleHook: string
  secrets: { secretIds: readonly string[]; secretsExist: Record<string, boolean> | null; parameterPaths: readonly string[]; parameterKeys: Record<string, string[]> | null; requiredEnv: string[]; gitCredentialSecret: string | null }
  pm2Apps: { name: string; script: string; args?: string[]; execMode: string; instances: number | 'max'; cwd: string }[]
  health: unknown
  build: string[] | null
  manifest: string
  /** the release cache: this commit's key and whether a run would boot from the cache */
  releaseCache: { location: string; key: string | null; index: string | null; wouldHit: boolean | null; note: string } | null
  phases: string[]
}

/** Read-only: the key from the plan's clone, then GetObject of the commit's index entry. */
const planCache = async (s: Settings, seams: Seams, repo: RepoTree, spec: ServiceSpec | undefined, commit: string | undefined): Promise<Plan['releaseCache']> => {
  const store = await seams.cacheStore(s)
  if (!store || !s.releaseCache) return null
  const location = store.location
  if (!commit || !spec) return { location, key: null, index: null, wouldHit: null, note: 'unknown: the commit was not resolved' }
  const runtime = currentRuntime()
  const key = await readReleaseCacheKey(repo, spec, commit, runtime)
  const index = store.url(indexKey(s.releaseCache, s.service, commit, runtime))
  try {
    const entry = await readIndexEntry(store, { loc: s.releaseCache, service: s.service, commit, runtime })
    if (entry === undefined) return { location, key, index, wouldHit: false, note: 'miss: deploy from source, then publish' }
    if (typeof entry === 'string') return { location, key, index, wouldHit: false, note: `entry unusable (${entry}): deploy from source, then replace it` }
    return entry.key === key
      ? { location, key, index, wouldHit: true, note: `hit: published by ${entry.publishedBy} at ${entry.publishedAt} (${entry.archive.bytes} bytes)` }
      : { location, key, index, wouldHit: false, note: `the entry's key is ${entry.key}: deploy from source, then replace it` }
  } catch (e) {
    return { location, key, index, wouldHit: null, note: `unknown: ${messageOf(e).split('\n')[0]}` }
  }
}

export const makePlan = async (input: Omit<SettingsInput, 'tags'>, seams: Seams): Promise<Plan> => {
  const id = await seams.identity.identify()
  const { settings: s, configSource } = await resolveWithAgentConfig(input, id, seams)
  const p = pathsFor(s.root, s.service)
  const git = seams.git(s)
  let commit: string | undefined
  let commitNote: string | undefined
  const tmp = await mkdtemp(join(tmpdir(), 'bootstrap-plan-'))
  let spec
  let manifestNote = 'defaults (no manifest read)'
  let releaseCache: Plan['releaseCache'] = null
  const repoTree = { dir: join(tmp, 'repo'), owner: process.getuid?.() ?? 0 }
  try {
    try {
      commit = await git.headOf(s.repository, s.branch)
      if (commit === undefined) commitNote = `branch ${s.branch} does not exist on the remote`
      else {
        await git.cloneBranch(s.repository, s.branch, { dir: join(tmp, 'repo') })
        // a private clone of the agent's own: its files are the agent's uid's
        spec = await loadServiceSpec(repoTree, s.manifestFile, s.service)
        manifestNote = spec.fromManifest ? `${s.manifestFile} at ${commit.slice(0, 12)}` : `no ${s.manifestFile}: defaults`
      }
    } catch (e) {
      if (!isAgentError(e) || !/^GIT_/.test(e.code)) throw e
      commitNote = s.gitCredentialSecret
        ? `unknown: the repository needs the credential in ${s.gitCredentialSecret}, and plan reads no secret (${e.code})`
        : `unknown: ${e.message}`
    }
    releaseCache = await planCache(s, seams, repoTree, spec, commit)
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
  const live = await readCurrent(p.serviceDir)
  const liveMeta = live ? await readReleaseRecord(p.releaseRecords, live) : undefined
  const deploy = !commit
    ? 'unknown (commit not resolved)'
    : liveMeta?.commit === commit && liveMeta.good
      ? 'commit already live: refresh secrets if changed, keep the release'
      : `deploy ${commit.slice(0, 12)} as a new release${live ? ` (replacing ${live})` : ''}`
  const warm = warmPoolTarget(id.lifecycleState)
  const unreachable = await serviceReachProblem(seams.exec, s.serviceUser ?? 'bootstrap-app', p, s.repository)
  const action = unreachable
    ? `would fail before changing anything (exit 2, ${unreachable.code}): see service user`
    : warm
      ? `${deploy}; warm pool (${warm}): prepare only, start nothing`
      : deploy
  const eco = spec
    ? buildEcosystem({ spec, current: p.current, envFile: p.envFile, appLogDir: p.appLogDir, preload: agentFile('env-preload.js'), wrapper: agentFile('run-with-env.js'), npmBin: 'npm' })
    : undefined
  const hook = seams.hook(s, id)
  // read-only discovery (Describe* calls): whether a lifecycle action waits on this instance
  const lifecycleHook = hook.discover ? await hook.discover() : hook.description
  // names only: DescribeSecret and DescribeParameters never return a value
  const source = seams.secrets(s)
  const secretsExist = source.describeSecrets ? Object.fromEntries(await source.describeSecrets(secretIdsToFetch(s.secretIds))) : null
  const parameterKeys: Record<string, string[]> | null = source.listParameterNames ? {} : null
  if (parameterKeys && source.listParameterNames) {
    for (const path of s.parameterPaths) parameterKeys[path] = (await source.listParameterNames(path)).map(n => parameterKey(path, n))
  }
  return {
    service: s.service,
    environment: s.environment,
    branch: s.branch,
    branchSource: s.branchSource,
    repository: s.repository,
    commit: commit ?? null,
    ...(commitNote ? { commitNote } : {}),
    live: { release: live ?? null, commit: liveMeta?.commit ?? null },
    action,
    root: s.root,
    agentConfig: configSource ?? null,
    serviceUser: s.serviceUser,
    serviceUserReach: unreachable ? { problem: unreachable.message, remedy: unreachable.remedy } : null,
    instance: { id: id.instanceId, source: id.source, lifecycleState: id.lifecycleState ?? null },
    lifecycleHook,
    secrets: { secretIds: s.secretIds, secretsExist, parameterPaths: s.parameterPaths, parameterKeys, requiredEnv: spec?.requiredEnv ?? [], gitCredentialSecret: s.gitCredentialSecret ?? null },
    pm2Apps: (eco?.apps ?? []).map(a => ({ name: a.name, script: a.script, ...(a.args ? { args: a.args } : {}), execMode: a.exec_mode, instances: a.instances, cwd: a.cwd })),
    health: spec?.health ?? null,
    build: spec?.build ?? null,
    manifest: manifestNote,
    releaseCache,
    phases: PHASE_NAMES,
  }
}

export const formatPlan = (plan: Plan): string => {
  const lines = [
    `plan for ${plan.service} (${plan.environment}) on ${plan.instance.id}`,
    `  repository      ${plan.repository}`,
    `  branch          ${plan.branch} (from ${plan.branchSource})`,
    `  commit          ${plan.commit ?? plan.commitNote ?? 'unknown'}`,
    `  live            ${plan.live.release ?? 'nothing yet'}${plan.live.commit ? ` @ ${plan.live.commit.slice(0, 12)}` : ''}`,
    `  action          ${plan.action}`,
    `  manifest        ${plan.manifest}`,
    `  secret ids      ${plan.secrets.secretIds.join(', ') || '(none)'}`,
    ...(plan.secrets.secretsExist ? [`  secrets exist   ${Object.entries(plan.secrets.secretsExist).map(([k, v]) => `${k}: ${v ? 'yes' : 'NO'}`).join(', ')}`] : []),
    `  parameter paths ${plan.secrets.parameterPaths.join(', ') || '(none)'}`,
    ...Object.entries(plan.secrets.parameterKeys ?? {}).map(([p, keys]) => `  keys under ${p}: ${keys.join(', ') || '(none)'}`),
    `  required keys   ${plan.secrets.requiredEnv.join(', ') || '(none declared)'}`,
    `  git credential  ${plan.secrets.gitCredentialSecret ?? '(none: public or file repository)'}`,
    ...plan.pm2Apps.map(a => `  pm2 app         ${a.name}: ${a.script}${a.args ? ` ${a.args.join(' ')}` : ''} (${a.execMode} x${a.instances}) in ${a.cwd}`),
    `  health          ${JSON.stringify(plan.health)}`,
    `  build           ${plan.build ? plan.build.join(' ') : '(none)'}`,
    `  lifecycle hook  ${plan.lifecycleHook}`,
    `  root            ${plan.root} (service user ${plan.serviceUser})`,
    ...(plan.serviceUserReach ? [`  service user    ${plan.serviceUserReach.problem}`, `    what to do: ${plan.serviceUserReach.remedy}`] : []),
    `  agent config    ${plan.agentConfig ?? '(no configuration parameter)'}`,
    ...(plan.releaseCache ? [
      `  release cache   ${plan.releaseCache.location}: ${plan.releaseCache.note}`,
      ...(plan.releaseCache.key ? [`  cache key       ${plan.releaseCache.key}`, `  cache entry     ${plan.releaseCache.index}`] : []),
    ] : []),
    `  phases          ${plan.phases.join(' -> ')}`,
  ]
  return `${lines.join('\n')}\n`
}
