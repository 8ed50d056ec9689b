/**
 * What is wrong with a release's package-lock.json, for `npm ci` (releases/install.ts). npm reports a
 * missing or unparseable lockfile as its usage text, and one out of sync with package.json as a
 * usage error too; each is a repository that must be fixed (exit 2, not retried), so each gets
 * its own code, the file, and what to do. Pure functions: the caller reads the file and runs npm.
 */
import { ConfigError, messageOf } from '../core/errors.js'

/** V8's JSON error without the piece of text it quotes (a lockfile URL may carry a registry token) */
const jsonError = (e: unknown) => messageOf(e).replace(/,? ?"(?:[^"\\]|\\.)*"(?:\.\.\.)?/g, '')

const CONFLICT_MARKER = /^(<{7}|={7}|>{7})( |$)/

/** Before npm runs: the lockfile's text (undefined when there is none) in release dir `dir`. */
export const lockfileProblem = (text: string | undefined, dir: string): ConfigError | undefined => {
  if (text === undefined) {
    return new ConfigError(
      `no package-lock.json beside package.json in ${dir}: npm ci installs exactly what a committed lockfile lists and cannot run without one`,
      'run npm install, commit package-lock.json and push a new commit',
      'LOCKFILE_MISSING',
    )
  }
  try {
    JSON.parse(text)
    return undefined
  } catch (e) {
    const marker = text.split('\n').findIndex(l => CONFLICT_MARKER.test(l))
    return new ConfigError(
      `package-lock.json in ${dir} is not valid JSON (${marker >= 0 ? `a merge-conflict marker on line ${marker + 1}` : jsonError(e)}): expected the lockfile npm install writes`,
      `${marker >= 0 ? 'resolve the merge conflict (or regenerate the lockfile with npm install)' : 'regenerate the lockfile with npm install'}, commit package-lock.json and push a new commit`,
      'LOCKFILE_INVALID',
    )
  }
}

/** After a failed npm ci: its refusal of a lockfile it could parse (EUSAGE), else undefined. */
export const lockfileRefused = (npmOutput: string, dir: string): ConfigError | undefined => {
  if (!/^npm (?:error|ERR!) code EUSAGE\b/m.test(npmOutput)) return undefined
  if (/package\.json and package-lock\.json .*are in sync/.test(npmOutput)) {
    const found = npmOutput.split('\n').flatMap(l => /^npm (?:error|ERR!) ((?:Missing|Invalid): .*\S)/.exec(l)?.[1] ?? [])
    const details = [...new Set(found)].slice(0, 8)
    return new ConfigError(
      `package.json and package-lock.json in ${dir} are out of sync: npm ci installs only what the lockfile lists${details.length ? `:\n${details.join('\n')}` : ''}`,
      'run npm install to update package-lock.json, commit it with package.json and push a new commit',
      'LOCKFILE_OUT_OF_SYNC',
    )
  }
  if (/can only install with an existing package-lock\.json/.test(npmOutput)) {
    return new ConfigError(
      `package-lock.json in ${dir} is not a lockfile npm ci can use: expected the lockfile npm install writes (lockfileVersion 1 or later)`,
      'regenerate the lockfile with npm install, commit package-lock.json and push a new commit',
      'LOCKFILE_INVALID',
    )
  }
  return undefined
}
