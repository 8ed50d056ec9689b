/**
 * /etc/bootstrap-agent/agent.env, written by user-data and also read by systemd's
 * EnvironmentFile=: KEY=VALUE lines, `#` comments, values optionally in matching single or double
 * quotes (systemd's subset: no expansion). It holds configuration only, never secrets.
 */
import { readFile } from 'node:fs/promises'
import { ConfigError, errnoCode } from '../core/errors.js'

export const parseAgentEnv = (text: string, file: string): Record<string, string> => {
  const out: Record<string, string> = {}
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
    if (!m || m[1] === undefined || m[2] === undefined) {
      throw new ConfigError(`${file} line ${i + 1} is not KEY=VALUE`, `fix ${file} (it is written by user-data; re-render it with bootstrap-agent render-user-data)`, 'AGENT_ENV_INVALID')
    }
    let v = m[2]
    const q = v[0]
    if ((q === '"' || q === "'") && v.length >= 2 && v.endsWith(q)) {
      v = v.slice(1, -1)
      if (q === '"') v = v.replace(/\\(["\\$`])/g, '$1')
    }
    out[m[1]] = v
  })
  return out
}

export const readAgentEnv = async (file: string): Promise<Record<string, string>> => {
  try {
    return parseAgentEnv(await readFile(file, 'utf8'), file)
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return {}
    throw e
  }
}
