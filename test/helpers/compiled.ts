/**
 * The compiled agent (dist/) for unit tests that run one of its files in a real child process
 * (the env preload through `node --import`, the archive worker as the service user): rebuilt with
 * the project's tsc when an output is missing or older than its source, so a stale dist/ can
 * neither pass nor fail such a test for the wrong reason, and a fresh checkout needs no build.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { REPO } from './sandbox.js'

/** `modules` are paths under agent/src without extension (e.g. 'secrets/env-preload'); returns
 * the compiled path of the first. */
export const compiled = (modules: readonly string[]): string => {
  const stale = () =>
    modules.some(m => {
      const out = join(REPO, 'dist', `${m}.js`)
      return !existsSync(out) || statSync(out).mtimeMs < statSync(join(REPO, 'agent', 'src', `${m}.ts`)).mtimeMs
    })
  if (stale()) {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
    try {
      execFileSync(process.execPath, [tsc, '-p', REPO], { stdio: 'pipe' })
    } catch (e: unknown) {
      // tsc still emits when some other file of the project has a type error; only fail when the
      // files the test needs did not come out
      if (stale()) throw e
    }
  }
  return join(REPO, 'dist', `${modules[0] ?? ''}.js`)
}
