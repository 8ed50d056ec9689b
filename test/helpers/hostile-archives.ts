/**
 * Test fixture: tar archives built header by header with node-tar's own Header encoder, so an
 * entry can be anything an attacker could write (a `..` path, an absolute link, a device, a
 * setuid bit), which no honest packer would produce. Each hostile case names what it tries and
 * where it would write if extraction let it: `outside` is relative to the directory that holds
 * the extraction target, so a test can check it stayed untouched.
 */
import { Header } from 'tar'
import { gzipSync } from 'node:zlib'

export interface TarEntry {
  path: string
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO'
  mode?: number
  linkpath?: string
  data?: string | Buffer
}

const block = (e: TarEntry): Buffer => {
  const data = Buffer.from(e.data ?? '')
  const type = e.type ?? 'File'
  const header = new Header({
    path: e.path, type, mode: e.mode ?? (type === 'Directory' ? 0o755 : 0o644), size: type === 'File' ? data.length : 0,
    mtime: new Date('2026-01-01T00:00:00Z'), uid: 0, gid: 0, uname: 'root', gname: 'root',
    ...(e.linkpath === undefined ? {} : { linkpath: e.linkpath }),
    ...(type === 'CharacterDevice' || type === 'BlockDevice' ? { devmaj: 1, devmin: 3 } : {}),
  })
  const head = Buffer.alloc(512)
  header.encode(head, 0)
  const body = Buffer.alloc(Math.ceil((type === 'File' ? data.length : 0) / 512) * 512)
  if (type === 'File') data.copy(body)
  return Buffer.concat([head, body])
}

/** A gzip-compressed tar of exactly these entries. */
export const tarGz = (entries: TarEntry[]): Buffer => gzipSync(Buffer.concat([...entries.map(block), Buffer.alloc(1024)]))

export interface HostileCase {
  name: string
  entries: TarEntry[]
  /** paths (relative to the parent of the extraction target) that must not exist afterwards */
  outside: string[]
}

/** Every way out of the release directory and every dangerous entry we know of, one per case.
 * The target is `<parent>/<release>`; `../` from it reaches `<parent>`. */
export const HOSTILE_CASES: HostileCase[] = [
  { name: 'a path with ..', entries: [{ path: '../evil-dotdot', data: 'x' }], outside: ['evil-dotdot'] },
  { name: 'a path with .. in the middle', entries: [{ path: 'a/../../evil-middle', data: 'x' }], outside: ['evil-middle'] },
  { name: 'an absolute path', entries: [{ path: '/tmp/bootstrap-agent-evil-absolute', data: 'x' }], outside: [] },
  { name: 'a symlink to an absolute path', entries: [{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }], outside: [] },
  { name: 'a symlink leaving the release', entries: [{ path: 'a/up', type: 'SymbolicLink', linkpath: '../../' }], outside: [] },
  {
    name: 'a symlink, then a file written through it',
    entries: [{ path: 'out', type: 'SymbolicLink', linkpath: '..' }, { path: 'out/evil-through', data: 'x' }],
    outside: ['evil-through'],
  },
  { name: 'a hard link to an absolute path', entries: [{ path: 'passwd', type: 'Link', linkpath: '/etc/passwd' }], outside: [] },
  { name: 'a hard link leaving the release', entries: [{ path: 'victim', type: 'Link', linkpath: '../victim.txt' }], outside: [] },
  { name: 'a character device', entries: [{ path: 'null', type: 'CharacterDevice' }], outside: [] },
  { name: 'a block device', entries: [{ path: 'disk', type: 'BlockDevice' }], outside: [] },
  { name: 'a FIFO', entries: [{ path: 'pipe', type: 'FIFO' }], outside: [] },
  { name: 'a setuid file', entries: [{ path: 'bin/su', mode: 0o4755, data: '#!/bin/sh\nid\n' }], outside: [] },
  { name: 'a setgid file', entries: [{ path: 'bin/sg', mode: 0o2755, data: '#!/bin/sh\nid\n' }], outside: [] },
]

/** A harmless release: what the hostile cases are measured against. */
export const HONEST_ENTRIES: TarEntry[] = [
  { path: 'app', type: 'Directory' },
  { path: 'app/server.js', data: 'console.log("hi")\n', mode: 0o755 },
  { path: 'app/node_modules/.bin', type: 'Directory' },
  { path: 'app/node_modules/.bin/tool', type: 'SymbolicLink', linkpath: '../../server.js' },
  { path: 'app/copy.js', type: 'Link', linkpath: 'app/server.js' },
]
