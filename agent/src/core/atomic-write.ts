/**
 * Atomic file replacement for files that hold secrets (invariant 2): a reader sees the old file
 * or the new one, never a partial one, and the new content is never readable by anyone else.
 *
 * Not the npm `write-file-atomic` package: it resolves a symlink at the target and writes the
 * file it points to, so a planted link could redirect secrets anywhere. Here a symlink is refused.
 */
import { randomBytes } from 'node:crypto'
import { constants, type Dirent, type Stats } from 'node:fs'
import { lstat, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { AgentError, errnoCode, isAgentError, messageOf } from './errors.js'

export interface AtomicWriteOptions {
  /** final permission bits, e.g. 0o600; the temp file is created with them */
  mode: number
  uid?: number
  gid?: number
}

const tempPrefix = (base: string) => `.${base}.tmp-`

const lstatOrUndefined = async (path: string): Promise<Stats | undefined> => {
  try {
    return await lstat(path)
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw e
  }
}

const refuseSymlink = async (path: string): Promise<void> => {
  if ((await lstatOrUndefined(path))?.isSymbolicLink()) {
    throw new AgentError(`refusing to write ${path}: it is a symbolic link`, {
      code: 'REFUSE_SYMLINK',
      remedy: `remove the symlink at ${path} (and find out who planted it); the agent writes a regular file there`,
    })
  }
}

const removeQuietly = async (path: string): Promise<void> => {
  try {
    await unlink(path)
  } catch {
    // never created, or already renamed into place; a failure here must not hide the error
    // that brought us here, and removeStaleTemps on the next run catches whatever remains
  }
}

const syncDir = async (dir: string): Promise<void> => {
  const dh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await dh.sync()
  } finally {
    await dh.close()
  }
}

export const writeFileAtomic = async (
  path: string,
  data: string | Buffer,
  opts: AtomicWriteOptions,
): Promise<void> => {
  const dir = dirname(path)
  const tmp = join(dir, tempPrefix(basename(path)) + randomBytes(6).toString('hex'))
  let fh: FileHandle | undefined
  try {
    await refuseSymlink(path)
    // EXCL + NOFOLLOW: never reuse or follow something already at the temp name. The mode is
    // applied at creation, so the secret is never readable by others, not even for an instant.
    const flags = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW
    fh = await open(tmp, flags, opts.mode)
    // the umask may have removed bits the caller asked for (it can only remove, never add)
    await fh.chmod(opts.mode)
    await fh.writeFile(data)
    if (opts.uid !== undefined || opts.gid !== undefined) await fh.chown(opts.uid ?? -1, opts.gid ?? -1)
    // without fsync a crash after the rename can leave an empty file under the final name
    await fh.sync()
    await fh.close()
    fh = undefined
    // rename replaces a symlink rather than writing through it, but a link planted since the
    // first check still means someone is tampering: refuse instead of silently replacing it
    await refuseSymlink(path)
    await rename(tmp, path)
    // the rename itself is only durable once the directory entry is on disk
    await syncDir(dir)
  } catch (e: unknown) {
    await fh?.close().catch(() => undefined)
    await removeQuietly(tmp)
    if (isAgentError(e)) throw e
    throw new AgentError(`cannot write ${path}: ${messageOf(e)}`, {
      code: 'WRITE_FAILED',
      remedy: `check that ${dir} exists, is writable by the agent and the disk is not full`,
      cause: e,
    })
  }
}

/**
 * Deletes `.<basename>.tmp-*` leftovers of a run killed mid-write (they may hold secrets).
 * Returns how many were removed; a missing directory means there is nothing to remove.
 */
export const removeStaleTemps = async (dir: string, base: string): Promise<number> => {
  let entries: Dirent[]
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return 0
    throw e
  }
  const prefix = tempPrefix(base)
  let removed = 0
  for (const entry of entries) {
    // only files and links: a directory with a matching name is not something we ever create
    if (!entry.name.startsWith(prefix) || entry.isDirectory()) continue
    // no ENOENT tolerance needed: the run lock means no other cleanup runs concurrently
    await unlink(join(dir, entry.name))
    removed++
  }
  return removed
}
