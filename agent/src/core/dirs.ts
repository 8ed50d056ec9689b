/**
 * Directories the agent manages, created (or repaired: a previous run or a person may have left
 * other modes) with an explicit mode and owner. Refuses a symlink where a directory belongs, so
 * a planted link cannot redirect where secrets or releases are written; the mode and owner are
 * set on the directory opened without following a link (fchmod, fchown), so a link swapped in
 * after the check cannot turn them into a chmod or chown of another path.
 */
import { constants } from 'node:fs'
import { lstat, mkdir, open } from 'node:fs/promises'
import { AgentError, errnoCode } from './errors.js'

export const ensureDir = async (path: string, mode: number, owner?: { uid: number; gid: number }): Promise<void> => {
  await mkdir(path, { recursive: true, mode })
  const dir = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(async (e: unknown) => {
    const code = errnoCode(e)
    if (code !== 'ENOTDIR' && code !== 'ELOOP') throw e
    const st = await lstat(path)
    throw new AgentError(`${path} is not a directory (it is a ${st.isSymbolicLink() ? 'symlink' : 'file'}); refusing to use it`, {
      code: 'REFUSE_SYMLINK',
      remedy: `remove ${path}; the agent recreates it`,
    })
  })
  try {
    const st = await dir.stat()
    if ((st.mode & 0o7777) !== mode) await dir.chmod(mode)
    if (owner && (st.uid !== owner.uid || st.gid !== owner.gid)) await dir.chown(owner.uid, owner.gid)
  } finally {
    await dir.close()
  }
}

export const exists = async (path: string): Promise<boolean> => {
  try {
    await lstat(path)
    return true
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return false
    throw e
  }
}
