import { basename } from 'node:path'
import { isRefused } from '../../core/beneath.js'
import { ConfigError } from '../../core/errors.js'
import { readUntrusted } from '../../core/untrusted-files.js'
import { ENV_FILE_MAX_BYTES, serializeEnv } from '../../secrets/env-file.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'
import { mergeSecrets, secretIdsToFetch, type MergeInput } from '../../secrets/source.js'

/**
 * The values of every secret source of the settings, read once per run. `fetch` begins the reads
 * as soon as the settings are known, so they overlap `git ls-remote` and the clone (the manifest's
 * requiredEnv, which needs the clone, is checked afterwards); the `secrets` phase awaits them and
 * so reports their failure, as when the reads were its own. Nothing is written here.
 */
export const readSecretSources = (ctx: RunContext): Promise<Omit<MergeInput, 'secretIds'>> => {
  if (!ctx.secretValues) {
    const s = need(ctx.settings, 'settings')
    const source = ctx.seams.secrets(s)
    ctx.secretValues = Promise.all([
      source.getSecrets(secretIdsToFetch(s.secretIds)),
      Promise.all(s.parameterPaths.map(async path => ({ path, items: await source.getParametersByPath(path) }))),
    ]).then(([secrets, parameters]) => ({ secrets, parameters }))
  }
  return ctx.secretValues
}

/** Begins readSecretSources without waiting (a failure is the `secrets` phase's to report). */
export const readSecretSourcesInBackground = (ctx: RunContext): void => {
  readSecretSources(ctx).catch(() => undefined)
}


/**
 * Secrets Manager ids + Parameter Store paths -> one validated map -> the env file's text, kept
 * in memory until `switch` writes it (so a failure before then leaves the live file untouched).
 * Required keys from the manifest are checked here, before anything is switched.
 */
export const secrets: Phase<RunContext> = {
  name: 'secrets',
  async run(ctx) {
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const spec = need(ctx.spec, 'spec')
    const source = ctx.seams.secrets(s)
    const { secrets: fetched, parameters } = await readSecretSources(ctx)
    for (const payload of fetched.values()) if (payload.kind === 'string') ctx.scrubber.add([payload.text])
    for (const { items } of parameters) ctx.scrubber.add(items.map(i => i.value))
    const merged = mergeSecrets({ secretIds: s.secretIds, secrets: fetched, parameters })
    ctx.scrubber.add(Object.values(merged.values))
    for (const o of merged.overrides) ctx.log.info(o, `secret key ${o.key} from ${o.from} overridden by ${o.by}`)
    const missing = spec.requiredEnv.filter(k => !(k in merged.values))
    if (missing.length) {
      throw new ConfigError(
        `required env key(s) ${missing.join(', ')} of service "${s.service}" are in none of the secret sources (${[...s.secretIds, ...s.parameterPaths].join(', ')})`,
        'add them to the secret or parameters, or remove them from requiredEnv in the manifest',
        'SECRET_REQUIRED_MISSING',
      )
    }
    ctx.secrets = merged
    ctx.envText = serializeEnv(merged.values)
    // the env file's directory is the service user's: what is there is read as its file, never
    // through a link or a FIFO. Anything else is not the previous env file (nothing to roll back
    // to); `switch` puts a real one in its place.
    try {
      const previous = await readUntrusted({ dir: p.envDir, rel: basename(p.envFile), owner: need(ctx.user, 'user').uid }, ENV_FILE_MAX_BYTES)
      if (previous !== undefined) ctx.previousEnvText = previous
    } catch (e) {
      if (!isRefused(e)) throw e
      ctx.log.warn({ file: p.envFile, why: e.why }, `the env file in place is not one the agent wrote (${e.why}): it is replaced, and not restored on a rollback`)
    }
    ctx.envChanged = ctx.previousEnvText !== ctx.envText
    const keys = Object.keys(merged.values).sort()
    ctx.log.info({ keys, origin: merged.origin }, `${keys.length} secret keys resolved`)
    return { detail: `${keys.length} keys from ${source.description}${ctx.envChanged ? '' : ' (unchanged)'}` }
  },
}
