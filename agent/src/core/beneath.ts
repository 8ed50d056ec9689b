/**
 * Paths below a directory the service user can write (its logs, a release, PM2_HOME), as root
 * must walk them: without ever following a link. Each component is opened relative to its
 * parent's open descriptor (`/proc/self/fd/N/<name>`, Linux's stand-in for openat(2), which Node
 * lacks) with O_NOFOLLOW, so a link planted anywhere on the path, or swapped in while we walk, is
 * refused (ELOOP, ENOTDIR) rather than followed: a check-then-open could be raced, this cannot.
 *
 * `base` itself is opened with O_NOFOLLOW too, but the components above it are followed: they
 * must be root's (the callers pass paths such as `<serviceDir>/logs` whose parent only root
 * writes).
 */
import { constants, type Stats } from 'node:fs'
import { lstat, open, readlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, errnoCode } from './errors.js'

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW
/** symlinks followed by resolveBeneath before it gives up (the kernel's own limit) */
const MAX_LINKS = 40

/** `name` inside the directory open as `dir`, for the calls that take a path. */
export const at = (dir: FileHandle, name: string): string => `/proc/self/fd/${dir.fd}/${name}`

/** Why root does not read or touch a path below a service-writable directory. */
export class RefusedPathError extends ConfigError {
  readonly path: string
  /** what the entry is, in root's words (never its content) */
  readonly why: string
  constructor(path: string, why: string) {
    super(
      `refusing to use ${path}: ${why}; it is in a directory the service user can write, and the agent (root) never follows a link or reads anything but a regular file of the service user there`,
      `replace ${path} with a regular file (a committed symlink: commit the file itself), or remove it and find out who put it there; then run again`,
      'UNTRUSTED_PATH_REFUSED',
    )
    this.name = 'RefusedPathError'
    this.path = path
    this.why = why
  }
}

export const isRefused = (e: unknown): e is RefusedPathError => e instanceof RefusedPathError

/** What an entry is, in words, for a refusal. */
export const kindOf = (st: Stats): string =>
  st.isSymbolicLink() ? 'a symbolic link'
    : st.isDirectory() ? 'a directory'
      : st.isFIFO() ? 'a FIFO'
        : st.isSocket() ? 'a socket'
          : st.isCharacterDevice() || st.isBlockDevice() ? 'a device'
            : 'a regular file'

const components = (path: string, rel: string): string[] => {
  const parts = rel.split('/').filter(c => c !== '' && c !== '.')
  if (parts.includes('..')) throw new RefusedPathError(join(path, rel), 'the path climbs out with ".."')
  return parts
}

/** Opens `base` (a directory, not a link) and each directory of `dirs` below it, without links;
 * returns the innermost, the caller closes it. ENOENT passes through. */
const openDirs = async (base: string, dirs: string[]): Promise<FileHandle> => {
  let dir = await open(base, DIR_FLAGS).catch(async (e: unknown) => {
    if (errnoCode(e) === 'ENOTDIR' || errnoCode(e) === 'ELOOP') throw new RefusedPathError(base, `it is ${kindOf(await lstat(base))}, not a directory`)
    throw e
  })
  let path = base
  try {
    for (const name of dirs) {
      path = join(path, name)
      const next = await open(at(dir, name), DIR_FLAGS).catch(async (e: unknown) => {
        const code = errnoCode(e)
        if (code !== 'ENOTDIR' && code !== 'ELOOP') throw e
        throw new RefusedPathError(path, `it is ${kindOf(await lstat(at(dir, name)))}, not a directory`)
      })
      await dir.close()
      dir = next
    }
    return dir
  } catch (e) {
    await dir.close()
    throw e
  }
}

/**
 * Opens `rel` below `base` with `flags` (O_NOFOLLOW is added). A link anywhere is refused
 * (RefusedPathError); a missing component rejects with ENOENT, as open(2) would.
 */
export const openBeneath = async (base: string, rel: string, flags: number): Promise<FileHandle> => {
  const parts = components(base, rel)
  const name = parts.pop()
  if (name === undefined) return open(base, flags | constants.O_NOFOLLOW)
  const dir = await openDirs(base, parts)
  try {
    return await open(at(dir, name), flags | constants.O_NOFOLLOW)
  } catch (e) {
    if (errnoCode(e) === 'ELOOP') throw new RefusedPathError(join(base, rel), 'it is a symbolic link')
    throw e
  } finally {
    await dir.close()
  }
}

/** lstat of `rel` below `base`, reached without links; undefined when it does not exist. */
export const lstatBeneath = async (base: string, rel: string): Promise<Stats | undefined> => {
  const parts = components(base, rel)
  const name = parts.pop()
  try {
    if (name === undefined) return await lstat(base)
    const dir = await openDirs(base, parts)
    try {
      return await lstat(at(dir, name))
    } finally {
      await dir.close()
    }
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw e
  }
}

export type Resolved = { kind: 'found'; rel: string } | { kind: 'missing'; rel: string } | { kind: 'escapes'; via: string }

/**
 * Where `rel` leads below `base` when the links it meets are followed, but only inside `base`:
 * the repository's own links (a monorepo's service path, a start script) work as for the service
 * user, while a link that leaves the tree (absolute, or `..` above `base`) is reported as escaping
 * before anything outside is looked at, so root cannot be used to tell whether a path it alone
 * can see exists. Returns the path with every link resolved (relative to `base`).
 */
export const resolveBeneath = async (base: string, rel: string): Promise<Resolved> => {
  const todo = rel.split('/')
  const stack: { name: string; fh: FileHandle }[] = []
  let links = 0
  const root = await openDirs(base, [])
  const relPath = () => stack.map(s => s.name).join('/')
  try {
    while (todo.length > 0) {
      const name = todo.shift() ?? ''
      if (name === '' || name === '.') continue
      if (name === '..') {
        const up = stack.pop()
        if (!up) return { kind: 'escapes', via: rel }
        await up.fh.close()
        continue
      }
      const dir = stack[stack.length - 1]?.fh ?? root
      const st = await lstat(at(dir, name)).catch((e: unknown) => {
        if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') return undefined
        throw e
      })
      if (!st) return { kind: 'missing', rel: [relPath(), name, ...todo].filter(Boolean).join('/') }
      if (st.isSymbolicLink()) {
        if (++links > MAX_LINKS) return { kind: 'escapes', via: `${rel} (more than ${MAX_LINKS} links)` }
        const target = await readlink(at(dir, name))
        if (target.startsWith('/')) return { kind: 'escapes', via: `${[relPath(), name].filter(Boolean).join('/')} -> ${target}` }
        todo.unshift(...target.split('/'))
        continue
      }
      if (todo.every(c => c === '' || c === '.')) return { kind: 'found', rel: [relPath(), name].filter(Boolean).join('/') }
      if (!st.isDirectory()) return { kind: 'missing', rel: [relPath(), name, ...todo].filter(Boolean).join('/') }
      const fh = await open(at(dir, name), DIR_FLAGS)
      stack.push({ name, fh })
    }
    return { kind: 'found', rel: relPath() || '.' }
  } finally {
    for (const s of stack) await s.fh.close()
    await root.close()
  }
}
