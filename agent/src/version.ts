/**
 * The agent's version, from the package.json above the running module. A module of its own so
 * `--version` can answer without loading the agent (bin.ts): the bundle's AWS SDK, pino and ajv
 * cost ~0.3 s and ~45 MB to load, for one line of output.
 */
import { createRequire } from 'node:module'

const readVersion = (): string => {
  const require = createRequire(import.meta.url)
  // dist/version.js, dist/agent.mjs (the bundle) and agent/src/version.ts sit at different depths
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg: unknown = require(rel)
      if (typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string') return pkg.version
    } catch {
      // try the next candidate
    }
  }
  return 'unknown'
}

export const VERSION: string = readVersion()
