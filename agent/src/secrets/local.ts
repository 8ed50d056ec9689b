/**
 * Local-mode SecretsSource: one JSON file standing in for both stores, so local runs use the
 * same names, rules and precedence as AWS.
 *   { "secrets":    { "<id>": { "KEY": "value" } | "<SecretString text>" },
 *     "parameters": { "/<path>/<name>": "value" } }
 */
import { readFile } from 'node:fs/promises'
import { ConfigError, errnoCode } from '../core/errors.js'
import { quote } from '../config/names.js'
import type { Parameter, SecretPayload, SecretsSource } from './source.js'

interface LocalFile {
  secrets: Record<string, unknown>
  parameters: Record<string, unknown>
}

const load = async (file: string): Promise<LocalFile> => {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') throw new ConfigError(`secrets file ${quote(file)} does not exist`, 'create it or fix --secrets-file / BOOTSTRAP_SECRETS_FILE', 'SECRETS_FILE_MISSING')
    throw e
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    // the parser's message may quote part of the file, which holds secret values
    throw new ConfigError(`secrets file ${quote(file)} is not valid JSON`, 'fix the file: {"secrets": {...}, "parameters": {...}}', 'SECRETS_FILE_INVALID')
  }
  const obj = typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : undefined
  const part = (k: string): Record<string, unknown> => {
    const v = obj?.[k]
    if (v === undefined) return {}
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new ConfigError(`secrets file ${quote(file)}: "${k}" must be an object`, 'fix the file: {"secrets": {...}, "parameters": {...}}', 'SECRETS_FILE_INVALID')
    }
    return v as Record<string, unknown>
  }
  if (!obj) throw new ConfigError(`secrets file ${quote(file)} must hold a JSON object`, 'fix the file: {"secrets": {...}, "parameters": {...}}', 'SECRETS_FILE_INVALID')
  return { secrets: part('secrets'), parameters: part('parameters') }
}

export const createLocalSecretsSource = (file: string): SecretsSource => {
  let cached: Promise<LocalFile> | undefined
  const data = () => (cached ??= load(file))
  return {
    description: `local file ${file}`,
    async getSecrets(ids) {
      const { secrets } = await data()
      const out = new Map<string, SecretPayload>()
      for (const id of ids) {
        const v = secrets[id]
        if (v === undefined) out.set(id, { kind: 'missing' })
        else if (typeof v === 'string') out.set(id, { kind: 'string', text: v })
        else if (typeof v === 'object' && v !== null && 'binary' in v && Object.keys(v).length === 1) out.set(id, { kind: 'binary' })
        else out.set(id, { kind: 'string', text: JSON.stringify(v) })
      }
      return out
    },
    async getParameter(name) {
      const v = (await data()).parameters[name]
      return typeof v === 'string' ? v : undefined
    },
    async getParametersByPath(path) {
      const { parameters } = await data()
      const prefix = path.endsWith('/') ? path : `${path}/`
      const items: Parameter[] = []
      for (const [name, value] of Object.entries(parameters)) {
        if (!name.startsWith(prefix)) continue
        if (typeof value !== 'string') {
          throw new ConfigError(`parameter ${quote(name)} in ${quote(file)} must be a string`, 'fix the secrets file', 'SECRETS_FILE_INVALID')
        }
        items.push({ name, value })
      }
      return items
    },
  }
}
