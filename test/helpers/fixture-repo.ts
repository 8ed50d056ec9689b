/**
 * Test fixture: a bare repository `<root>/<name>.git` whose branches each hold the given files.
 * Built with the real `git` through a throwaway work tree, so what the agent clones is exactly
 * what a git host would serve. Identity comes from the environment, never from global config.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

export interface FixtureRepo {
  bareDir: string
  /** file:// URL of the bare repository */
  fileUrl: string
  /** adds one commit to `branch` (creating it as an orphan if missing) with these files */
  commit(branch: string, files: Record<string, string>, message?: string): Promise<string>
  /** SHA `branch` points at in the bare repository */
  head(branch: string): Promise<string>
}

const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Fixture',
  GIT_AUTHOR_EMAIL: 'fixture@example.invalid',
  GIT_COMMITTER_NAME: 'Fixture',
  GIT_COMMITTER_EMAIL: 'fixture@example.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_TERMINAL_PROMPT: '0',
}

const git = (cwd: string, ...args: string[]): string =>
  execFileSync('git', args, { cwd, env: gitEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()

const hasBranch = (bareDir: string, branch: string): boolean => {
  try {
    git(bareDir, 'rev-parse', '--verify', '--quiet', `refs/heads/${branch}`)
    return true
  } catch {
    return false
  }
}

export const createFixtureRepo = async (opts: {
  root: string
  name: string
  branches: Record<string, Record<string, string>>
}): Promise<FixtureRepo> => {
  const bareDir = join(opts.root, `${opts.name}.git`)
  mkdirSync(bareDir, { recursive: true })
  git(bareDir, 'init', '--quiet', '--bare')

  const commit = async (branch: string, files: Record<string, string>, message?: string) => {
    const work = mkdtempSync(join(tmpdir(), 'fixture-work-'))
    try {
      git(work, 'init', '--quiet')
      if (hasBranch(bareDir, branch)) {
        git(work, 'fetch', '--quiet', bareDir, `refs/heads/${branch}`)
        git(work, 'checkout', '--quiet', '-b', branch, 'FETCH_HEAD')
      } else {
        git(work, 'checkout', '--quiet', '--orphan', branch)
      }
      for (const [path, content] of Object.entries(files)) {
        mkdirSync(dirname(join(work, path)), { recursive: true })
        writeFileSync(join(work, path), content)
      }
      git(work, 'add', '--all')
      git(work, 'commit', '--quiet', '--allow-empty', '-m', message ?? `update ${branch}`)
      git(work, 'push', '--quiet', bareDir, `HEAD:refs/heads/${branch}`)
      return git(work, 'rev-parse', 'HEAD')
    } finally {
      rmSync(work, { recursive: true, force: true })
    }
  }

  const names = Object.keys(opts.branches)
  for (const name of names) await commit(name, opts.branches[name] ?? {}, `initial ${name}`)
  // HEAD of a fresh bare repo names a branch that may not exist; point it at a real one so a
  // plain `git clone` of the fixture works too.
  if (names[0] !== undefined) git(bareDir, 'symbolic-ref', 'HEAD', `refs/heads/${names[0]}`)

  return {
    bareDir,
    fileUrl: `file://${bareDir}`,
    commit,
    head: async (branch) => git(bareDir, 'rev-parse', `refs/heads/${branch}`),
  }
}
