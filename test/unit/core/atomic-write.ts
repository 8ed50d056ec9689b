import t from 'tap'
import { lstat, readFile, readdir, stat, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { removeStaleTemps, writeFileAtomic } from '../../../agent/src/core/atomic-write.js'
import { isAgentError } from '../../../agent/src/core/errors.js'

const leftovers = async (dir: string) => (await readdir(dir)).filter(n => n.includes('.tmp-'))

const rejection = async (p: Promise<unknown>) => {
  try {
    await p
  } catch (e: unknown) {
    if (isAgentError(e)) return e
    throw e
  }
  throw new Error('expected writeFileAtomic to reject')
}

t.test('creates the file 0600 with the content, even under a permissive umask', async t => {
  const dir = t.testdir()
  const file = join(dir, 'svc.env')
  const old = process.umask(0)
  try {
    await writeFileAtomic(file, 'A="1"\n', { mode: 0o600 })
  } finally {
    process.umask(old)
  }
  t.equal((await stat(file)).mode & 0o777, 0o600)
  t.equal(await readFile(file, 'utf8'), 'A="1"\n')
  t.strictSame(await leftovers(dir), [])
})

t.test('applies the mode even when the umask would strip bits', async t => {
  const dir = t.testdir()
  const file = join(dir, 'f')
  const old = process.umask(0o077)
  try {
    await writeFileAtomic(file, 'x', { mode: 0o644 })
  } finally {
    process.umask(old)
  }
  t.equal((await stat(file)).mode & 0o777, 0o644)
})

t.test('replaces existing content and mode, as a new inode', async t => {
  const dir = t.testdir({ 'svc.env': 'old' })
  const file = join(dir, 'svc.env')
  const before = await stat(file)
  await writeFileAtomic(file, Buffer.from('new \u00e9'), { mode: 0o600 })
  const after = await stat(file)
  t.equal(await readFile(file, 'utf8'), 'new \u00e9')
  t.equal(after.mode & 0o777, 0o600)
  // a new inode is what makes the swap atomic for readers holding the old file open
  t.not(after.ino, before.ino)
  t.strictSame(await leftovers(dir), [])
})

t.test('refuses a symlink at the target and leaves its target untouched', async t => {
  const dir = t.testdir({ 'elsewhere.txt': 'precious' })
  const file = join(dir, 'svc.env')
  await symlink(join(dir, 'elsewhere.txt'), file)
  const e = await rejection(writeFileAtomic(file, 'SECRET', { mode: 0o600 }))
  t.equal(e.code, 'REFUSE_SYMLINK')
  t.match(e.message, file)
  t.equal(await readFile(join(dir, 'elsewhere.txt'), 'utf8'), 'precious')
  t.ok((await lstat(file)).isSymbolicLink(), 'the link itself is left alone too')
  t.strictSame(await leftovers(dir), [])
})

t.test('refuses a dangling symlink (it could create a file anywhere)', async t => {
  const dir = t.testdir()
  const file = join(dir, 'svc.env')
  await symlink(join(dir, 'not-yet.txt'), file)
  t.equal((await rejection(writeFileAtomic(file, 'x', { mode: 0o600 }))).code, 'REFUSE_SYMLINK')
  t.strictSame((await readdir(dir)).sort(), ['svc.env'])
})

t.test('a failure after the temp file exists removes it and keeps the old file', async t => {
  const dir = t.testdir({ 'svc.env': 'old' })
  const file = join(dir, 'svc.env')
  // uid 2^32 passes the "is a number" type check but is rejected by fchown, after open + write
  const e = await rejection(writeFileAtomic(file, 'new', { mode: 0o600, uid: 2 ** 32 }))
  t.equal(e.code, 'WRITE_FAILED')
  t.match(e.message, file)
  t.equal(await readFile(file, 'utf8'), 'old')
  t.strictSame(await leftovers(dir), [])
})

t.test('a failing rename (target is a non-empty directory) leaves no temp file', async t => {
  const dir = t.testdir({ 'svc.env': { keep: 'me' } })
  const e = await rejection(writeFileAtomic(join(dir, 'svc.env'), 'new', { mode: 0o600 }))
  t.equal(e.code, 'WRITE_FAILED')
  t.equal(await readFile(join(dir, 'svc.env', 'keep'), 'utf8'), 'me')
  t.strictSame(await leftovers(dir), [])
})

t.test('a missing directory is a WRITE_FAILED error naming the path', async t => {
  const file = join(t.testdir(), 'gone', 'svc.env')
  const e = await rejection(writeFileAtomic(file, 'x', { mode: 0o600 }))
  t.equal(e.code, 'WRITE_FAILED')
  t.match(e.message, file)
})

t.test('a path under a regular file is a WRITE_FAILED error, not a raw fs error', async t => {
  const file = join(t.testdir({ 'a-file': '' }), 'a-file', 'svc.env')
  const e = await rejection(writeFileAtomic(file, 'x', { mode: 0o600 }))
  t.equal(e.code, 'WRITE_FAILED')
  t.match(e.message, 'ENOTDIR')
})

t.test('chowns to the given uid/gid', async t => {
  // as root (CI, instances) hand the file to nobody; otherwise the only ids we may give are ours,
  // which still runs the fchown path instead of skipping the test
  const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }
  const them = me.uid === 0 ? { uid: 65534, gid: 65534 } : me
  const file = join(t.testdir(), 'svc.env')
  await writeFileAtomic(file, 'x', { mode: 0o600, ...them })
  const st = await stat(file)
  t.equal(st.uid, them.uid)
  t.equal(st.gid, them.gid)
  t.equal(st.mode & 0o777, 0o600)
  await writeFileAtomic(file, 'y', { mode: 0o600, gid: me.gid })
  const onlyGid = await stat(file)
  t.equal(onlyGid.uid, me.uid, 'uid not given: the new file stays owned by the writer')
  t.equal(onlyGid.gid, me.gid)
})

t.test('removeStaleTemps deletes only leftovers of the given file', async t => {
  const dir = t.testdir({
    'svc.env': 'live',
    '.svc.env.tmp-abc123': 'leftover 1',
    '.svc.env.tmp-': 'leftover 2',
    '.other.env.tmp-abc123': 'another file',
    'svc.env.tmp-abc123': 'no leading dot',
    '.svc.env.tmp-dir': {},
  })
  await symlink('/nonexistent', join(dir, '.svc.env.tmp-link'))
  t.equal(await removeStaleTemps(dir, 'svc.env'), 3)
  t.strictSame((await readdir(dir)).sort(), [
    '.other.env.tmp-abc123', '.svc.env.tmp-dir', 'svc.env', 'svc.env.tmp-abc123',
  ])
  t.equal(await removeStaleTemps(dir, 'svc.env'), 0, 'converges')
  t.equal(await removeStaleTemps(join(dir, 'missing'), 'svc.env'), 0)
})

t.test('removeStaleTemps reports errors other than a missing directory', async t => {
  const dir = t.testdir({ 'a-file': '' })
  await t.rejects(removeStaleTemps(join(dir, 'a-file'), 'svc.env'), { code: 'ENOTDIR' })
})

