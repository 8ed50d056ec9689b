/**
 * Directories the agent manages, created (or repaired: a previous run or a person may have left
 * other modes) with an explicit mode and owner. Refuses a symlink where a directory belongs, so
 * a planted link cannot redirect where secrets or releases are written.
 */
import { chmod, chown, lstat, mkdir } from 'node:fs/promises'
import { AgentError, errnoCode } from './errors.js'

export const ensureDir = async (path: string, mode: number, owner?: { uid: number; gid: number }): Promise<void> => {
  await mkdir(path, { recursive: true, mode })
  const st = await lstat(path)
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw new AgentError(`${path} is not a directory (it is a ${st.isSymbolicLink() ? 'symlink' : 'file'}); refusing to use it`, {
      code: 'REFUSE_SYMLINK',
      remedy: `remove ${path}; the agent recreates it`,
    })
  }
  if ((st.mode & 0o7777) !== mode) await chmod(path, mode)
  if (owner && (st.uid !== owner.uid || st.gid !== owner.gid)) await chown(path, owner.uid, owner.gid)
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
