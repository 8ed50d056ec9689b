/**
 * Removing a directory tree the service user owns (a release, a failed clone, node_modules). A
 * recursive delete by root walks a tree the service can change while it walks: a directory
 * swapped for a link to /etc between its check and its descent would send root's unlinks there.
 * `rm -rf` run *as the service user* cannot be sent anywhere that user could not delete itself,
 * whatever the tree holds. `--one-file-system` keeps it off a mount made inside the tree.
 */
import { AgentError } from './errors.js'
import type { Exec } from './exec.js'

export const removeTree = async (exec: Exec, dir: string, user: { uid: number; gid: number } | undefined): Promise<void> => {
  const r = await exec.run('rm', ['-rf', '--one-file-system', '--', dir], {
    env: { PATH: '/usr/bin:/bin', LANG: 'C' },
    timeoutMs: 300_000,
    ...(user ?? {}),
  })
  if (r.exitCode !== 0) {
    // rm's own messages name paths the service user chose: the count says enough
    const failures = r.stderr.split('\n').filter(l => l.trim() !== '').length
    throw new AgentError(`could not remove ${dir}: rm ${r.timedOut ? 'timed out' : `exited ${r.exitCode}`}${failures ? ` (${failures} path(s) not removed)` : ''}`, {
      code: 'REMOVE_FAILED',
      remedy: `check ${dir}: everything in it should belong to the service user, who removes it; remove what is left by hand`,
    })
  }
}

/** `removeTree` bound to one user, for callers that only pass a directory. */
export const treeRemover = (exec: Exec, user: { uid: number; gid: number } | undefined) => (dir: string): Promise<void> => removeTree(exec, dir, user)
