import { readFile } from 'node:fs/promises'
import { ConfigError, errnoCode } from '../errors.js'
import { serializeEnv } from '../env-file.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../run-context.js'
import { mergeSecrets, secretIdsToFetch } from '../secrets-source.js'

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
    const [fetched, parameters] = await Promise.all([
      source.getSecrets(secretIdsToFetch(s.secretIds)),
      Promise.all(s.parameterPaths.map(async path => ({ path, items: await source.getParametersByPath(path) }))),
    ])
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
    try {
      ctx.previousEnvText = await readFile(p.envFile, 'utf8')
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e
    }
    ctx.envChanged = ctx.previousEnvText !== ctx.envText
    const keys = Object.keys(merged.values).sort()
    ctx.log.info({ keys, origin: merged.origin }, `${keys.length} secret keys resolved`)
    return { detail: `${keys.length} keys from ${source.description}${ctx.envChanged ? '' : ' (unchanged)'}` }
  },
}
