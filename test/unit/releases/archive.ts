/**
 * releases/archive.ts on a real temp filesystem: packing leaves out .git, the agent's record,
 * runtime files and special files; an honest archive round-trips (files, modes, links); every
 * case of the hostile corpus is refused and writes nothing outside the target; an archive with
 * more bytes or entries than recorded is refused.
 */
import t from 'tap'
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { execFileSync } from 'node:child_process'
import { ArchiveRefused, packRelease, refusal, unpackRelease } from '../../../agent/src/releases/archive.js'
import { HONEST_ENTRIES, HOSTILE_CASES, tarGz } from '../../helpers/hostile-archives.js'
import { rejected } from '../../helpers/thrown.js'
import { gzipSync } from 'node:zlib'

const LIMITS = { maxBytes: 1 << 20, maxEntries: 100 }
const collect = async (s: Readable): Promise<Buffer> => {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(Buffer.from(c as Uint8Array))
  return Buffer.concat(chunks)
}
const listTree = (dir: string, prefix = ''): string[] =>
  readdirSync(dir).sort().flatMap(n => {
    const p = join(dir, n)
    const st = lstatSync(p)
    const rel = `${prefix}${n}`
    return st.isDirectory() ? [`${rel}/`, ...listTree(p, `${rel}/`)] : [st.isSymbolicLink() ? `${rel} -> ${readlinkSync(p)}` : rel]
  })

t.test('pack: the release as deployed, without .git, the agent record, runtime files or a FIFO; unpack restores it', async t => {
  const root = t.testdir({
    rel: {
      '.git': { config: '[core]\n' },
      '.bootstrap-release.json': '{}',
      'server.js': 'console.log(1)\n',
      'run.sh': '#!/bin/sh\n',
      node_modules: { dep: { 'index.js': 'module.exports = 1\n' }, '.bin': {} },
      dist: { 'index.html': '<html></html>\n' },
    },
  })
  const rel = join(root, 'rel')
  execFileSync('chmod', ['0755', join(rel, 'run.sh')])
  symlinkSync('../dep/index.js', join(rel, 'node_modules/.bin/dep'))
  execFileSync('mkfifo', [join(rel, 'fifo')])
  const completedAtMs = Date.now()
  const old = new Date(completedAtMs - 60_000)
  for (const f of ['server.js', 'run.sh', 'node_modules/dep/index.js', 'dist/index.html']) utimesSync(join(rel, f), old, old)
  writeFileSync(join(rel, 'cache.json'), '{"written":"by the service while it ran"}')
  const later = new Date(completedAtMs + 5000)
  utimesSync(join(rel, 'cache.json'), later, later)

  const excluded: string[] = []
  const tar = await collect(await packRelease({ dir: rel, completedAtMs, excluded }))
  t.same(excluded.sort(), ['cache.json', 'fifo'], 'runtime state and special files are left out, and reported')
  const out = join(root, 'out')
  mkdirSync(out)
  const r = await unpackRelease(Readable.from([gzipSync(tar)]), out, LIMITS)
  t.same(listTree(out), ['dist/', 'dist/index.html', 'node_modules/', 'node_modules/.bin/', 'node_modules/.bin/dep -> ../dep/index.js', 'node_modules/dep/', 'node_modules/dep/index.js', 'run.sh', 'server.js'])
  t.equal(lstatSync(join(out, 'run.sh')).mode & 0o777, 0o755, 'the executable bit survives')
  t.equal(readFileSync(join(out, 'node_modules/.bin/dep'), 'utf8'), 'module.exports = 1\n', 'the symlink resolves inside')
  t.equal(r.entries, 9)
  t.equal(r.bytes, Buffer.byteLength('console.log(1)\n') + Buffer.byteLength('#!/bin/sh\n') + Buffer.byteLength('module.exports = 1\n') + Buffer.byteLength('<html></html>\n'))
  t.notOk(tar.includes(Buffer.from('[core]')), 'no byte of .git')
})

t.test('an honest archive with links inside the release extracts', async t => {
  const out = join(t.testdir({ out: {} }), 'out')
  await unpackRelease(Readable.from([tarGz(HONEST_ENTRIES)]), out, LIMITS)
  t.same(listTree(out), ['app/', 'app/copy.js', 'app/node_modules/', 'app/node_modules/.bin/', 'app/node_modules/.bin/tool -> ../../server.js', 'app/server.js'])
  t.equal(lstatSync(join(out, 'app/copy.js')).ino, lstatSync(join(out, 'app/server.js')).ino, 'the hard link is one file')
})

for (const c of HOSTILE_CASES) {
  t.test(`refused: ${c.name}`, async t => {
    const parent = t.testdir({ 'victim.txt': 'untouched', target: {} })
    const target = join(parent, 'target')
    const before = listTree(parent)
    const e = await rejected(() => unpackRelease(Readable.from([tarGz([...HONEST_ENTRIES, ...c.entries])]), target, LIMITS))
    t.type(e, ArchiveRefused, String(e))
    for (const o of c.outside) t.notOk(existsSync(join(parent, o)), `${o} was not written`)
    t.same(listTree(parent).filter(p => !p.startsWith('target/')), before.filter(p => !p.startsWith('target/')), 'nothing changed beside the target')
    t.equal(readFileSync(join(parent, 'victim.txt'), 'utf8'), 'untouched')
    t.notOk(existsSync('/tmp/bootstrap-agent-evil-absolute'))
    t.notOk(listTree(target).some(p => /su$|sg$|null$|disk$|pipe$|etc ->|passwd$|victim$/.test(p)), 'the hostile entry itself is not in the target')
  })
}

t.test('an archive that unpacks to more than its entry recorded is refused', async t => {
  const big = [{ path: 'a', data: 'x'.repeat(600) }, { path: 'b', data: 'y'.repeat(600) }]
  const out = join(t.testdir({ out: {} }), 'out')
  t.match(await rejected(() => unpackRelease(Readable.from([tarGz(big)]), out, { maxBytes: 1000, maxEntries: 10 })), { name: 'ArchiveRefused', message: /more than the 1000 bytes its index entry recorded/ })
  const many = Array.from({ length: 5 }, (_, i) => ({ path: `f${i}`, data: 'z' }))
  const out2 = join(t.testdir({ out: {} }), 'out')
  t.match(await rejected(() => unpackRelease(Readable.from([tarGz(many)]), out2, { maxBytes: 1000, maxEntries: 4 })), { message: /more than the 4 entries/ })
})

t.test('not a gzip tar at all: refused by node-tar in strict mode', async t => {
  const out = join(t.testdir({ out: {} }), 'out')
  t.type(await rejected(() => unpackRelease(Readable.from([Buffer.from('this is no archive '.repeat(100))]), out, LIMITS)), ArchiveRefused)
})

t.test('refusal: the rule for each entry, before node-tar sees it', async t => {
  t.equal(refusal('a/b', { type: 'File', mode: 0o644, linkpath: '' }), undefined)
  t.equal(refusal('a/l', { type: 'SymbolicLink', mode: 0o777, linkpath: '../b' }), undefined, 'a sibling directory is inside')
  t.match(refusal('a/l', { type: 'SymbolicLink', mode: 0o777, linkpath: '../../b' }), /outside the release/)
  t.match(refusal('l', { type: 'SymbolicLink', mode: 0o777, linkpath: '' }), /outside the release/, 'an empty target')
  t.match(refusal('h', { type: 'Link', mode: 0o644, linkpath: 'x/../../y' }), /outside the release/)
  t.match(refusal('d', { type: 'Directory', mode: 0o2775, linkpath: '' }), /setuid or setgid/)
  t.match(refusal('./../x', { type: 'File', mode: 0o644, linkpath: '' }), /outside the release/)
})

t.test('node-tar on its own (strict, no filter of ours) refuses every case but the setuid and setgid bits: what our filter adds', async t => {
  const { extract } = await import('tar')
  for (const c of HOSTILE_CASES) {
    const parent = t.testdir({ target: {} })
    const target = join(parent, 'target')
    let refusedByTar = false
    writeFileSync(join(parent, 'a.tgz'), tarGz([...HONEST_ENTRIES, ...c.entries]))
    try {
      extract({ cwd: target, strict: true, sync: true, file: join(parent, 'a.tgz') })
    } catch {
      refusedByTar = true
    }
    t.equal(refusedByTar, !/setuid|setgid/.test(c.name), `${c.name}: ${refusedByTar ? 'refused' : 'extracted'} by node-tar alone`)
  }
})
