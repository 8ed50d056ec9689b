/**
 * What a run's phases share: the seams (created by main, faked in unit tests), the settings once
 * resolved, and the facts each phase finds for the next. Phases read and fill it; the runner owns
 * timing, logging and state.
 */
import type { Exec } from '../core/exec.js'
import type { Git, GitCredential } from '../git/client.js'
import type { Identity, InstanceIdentity } from '../seams/identity.js'
import type { LifecycleHook } from '../seams/lifecycle-hook.js'
import type { Logger } from '../core/logger.js'
import type { RepoTree, ServiceSpec } from '../config/manifest.js'
import { treeRemover } from '../core/remove-tree.js'
import type { CacheStore } from '../releases/cache-store.js'
import type { ReleaseOrigin } from '../releases/records.js'
import type { Paths } from '../core/paths.js'
import type { Pm2 } from '../pm2/cli.js'
import type { ReportSink } from '../reports/sink.js'
import type { Scrubber } from '../secrets/redact.js'
import type { MergedSecrets, MergeInput, SecretsSource } from '../secrets/source.js'
import type { ServiceUser } from '../core/service-user.js'
import type { Settings, SettingsInput } from '../config/settings.js'
import type { RunState } from './state.js'

export interface Seams {
  exec: Exec
  identity: Identity
  /** built once the settings are known (timeouts, attempts come from them) */
  git: (s: Settings) => Git
  /** also called before the settings exist, to read the agent configuration parameter: then
   * with the layers below it (resolveConfigLocation) */
  secrets: (s: Pick<Settings, 'localSecretsFile' | 'awsTimeoutMs'>) => SecretsSource
  pm2: (s: Settings, p: Paths, user: ServiceUser | undefined) => Pm2
  /** settings are undefined when they could not be resolved: the hook must still be completed */
  hook: (s: Settings | undefined, id: InstanceIdentity) => LifecycleHook
  /** where run reports go (reports/sink.ts); undefined where there is none (local mode) */
  reportSink: (group: string, id: InstanceIdentity) => ReportSink | undefined
  /** the release cache's object store; undefined when no cache is configured (always in local
   * mode). Async: the S3 SDK is loaded only when a cache is configured */
  cacheStore: (s: Settings) => Promise<CacheStore | undefined>
  now: () => Date
}

export interface Release {
  id: string
  /** <serviceDir>/releases/<id> */
  dir: string
  /** the service's directory inside the release (monorepo path applied) */
  serviceDir: string
  commit: string
  /** true when the live release already has the remote commit */
  reused: boolean
  /** a new release: built from source here, or extracted from the release cache */
  origin?: ReleaseOrigin
}

/** What the release cache did in this run, for the log, state.json and `status`. */
export interface CacheReport {
  /** s3://bucket/prefix */
  location: string
  /** the lookup: hit, miss, or why the entry could not be used */
  lookup?: string
  /** the index entry of this commit was found unusable: the publisher replaces it */
  replaceEntry?: boolean
  /** set when the git remote could not be reached and the branch pointer named the commit */
  commitFromPointer?: string
  /** the publication after the run (or why there was none) */
  published?: string
}

export interface RunContext {
  readonly seams: Seams
  readonly log: Logger
  readonly scrubber: Scrubber
  readonly input: Omit<SettingsInput, 'tags'>
  /** state.json of the run before this one, read before this run replaced it (releases/records.ts
   * adoptLegacyRelease: root's only evidence about a release of an earlier agent version) */
  readonly previousRun?: RunState
  identity?: InstanceIdentity
  /** the Warmed:* target lifecycle state when this run only prepares for a warm pool (releases/warm-pool.ts):
   * `start` and `verify` are skipped, nothing serves */
  warmPool?: string
  settings?: Settings
  paths?: Paths
  user?: ServiceUser
  hook?: LifecycleHook
  pm2?: Pm2
  /** PM2's unit and daemon made ready (pm2/ready.ts): begun during `install`, awaited by `start` */
  pm2Ready?: Promise<string | undefined>
  credential?: GitCredential
  remoteCommit?: string
  /** release `current` pointed to when the run started */
  liveRelease?: string
  release?: Release
  /** the install key of the new release, computed before any of its code ran (install) */
  installKey?: string
  spec?: ServiceSpec
  /** the secret sources' values, read while `fetch` clones (run/phases/secrets.ts) */
  secretValues?: Promise<Omit<MergeInput, 'secretIds'>>
  secrets?: MergedSecrets
  envText?: string
  /** env file content before this run (undefined: there was none) */
  previousEnvText?: string
  envChanged?: boolean
  /** set once `switch` changed what is live: failure from here on needs a rollback */
  switched?: { release: boolean; env: boolean; previousRelease: string | undefined }
  started?: boolean
  rolledBack?: boolean
  url?: string
  /** set when a release cache is configured */
  cache?: CacheReport
}

/** Narrowing for values a previous phase must have set; a missing one is a bug in the phase order. */
export const need = <T>(value: T | undefined, what: string): T => {
  if (value === undefined) throw new Error(`internal: ${what} is not set (phase order)`)
  return value
}

/** A release directory as root reads it: a tree of the service user's files (core/untrusted-files.ts). */
export const serviceTree = (ctx: RunContext, dir: string): RepoTree => ({ dir, owner: need(ctx.user, 'user').uid })

/** Removes a tree of the service user's, as that user (core/remove-tree.ts). */
export const removeAsService = (ctx: RunContext) => treeRemover(ctx.seams.exec, ctx.user?.switchTo)
