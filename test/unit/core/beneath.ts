import t, { type Test } from 'tap'
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { constants } from 'node:fs'
import { join } from 'node:path'
import { isRefused, lstatBeneath, openBeneath, resolveBeneath } from '../../../agent/src/core/beneath.js'

/** a tree with a secret outside it, and links pointing there from every depth */
const tree = async (t: Test) => {
  const dir = t.testdir({ outside: { 'secret.txt': 'root-only', sub: {} }, tree: { a: { b: { 'file.txt': 'inside' } }, 'top.txt': 'top' } })
  const base = join(dir, 'tree')
  await symlink(join(dir, 'outside/secret.txt'), join(base, 'link-file'))
  await symlink(join(dir, 'outside'), join(base, 'link-dir'))
  await symlink('../../outside/secret.txt', join(base, 'a/up'))
  await symlink('a/b', join(base, 'short'))
  await symlink('b/file.txt', join(base, 'a/inner'))
  return { dir, base }
}

const refusedWith = async (t: Test, p: Promise<unknown>, why: RegExp) => {
  try {
    await p
    t.fail('expected a refusal')
  } catch (e) {
    t.ok(isRefused(e), `refused (${e instanceof Error ? e.message : String(e)})`)
    if (isRefused(e)) {
      t.match(e.why, why)
      t.equal(e.code, 'UNTRUSTED_PATH_REFUSED')
      t.equal(e.exitCode, 2)
      t.notMatch(e.message, /root-only/, 'never the content')
    }
  }
}

t.test('openBeneath opens regular paths and refuses a link at any depth', async t => {
  const { base } = await tree(t)
  const fh = await openBeneath(base, 'a/b/file.txt', constants.O_RDONLY)
  t.equal(await fh.readFile('utf8'), 'inside')
  await fh.close()
  await refusedWith(t, openBeneath(base, 'link-file', constants.O_RDONLY), /symbolic link/)
  await refusedWith(t, openBeneath(base, 'link-dir/secret.txt', constants.O_RDONLY), /symbolic link, not a directory/)
  await refusedWith(t, openBeneath(base, 'short/file.txt', constants.O_RDONLY), /symbolic link/)
  await refusedWith(t, openBeneath(base, 'a/../top.txt', constants.O_RDONLY), /\.\./)
  await refusedWith(t, openBeneath(base, 'top.txt/x', constants.O_RDONLY), /regular file, not a directory/)
  await refusedWith(t, openBeneath(join(base, 'link-dir'), 'secret.txt', constants.O_RDONLY), /symbolic link, not a directory/)
  await t.rejects(openBeneath(base, 'a/nope.txt', constants.O_RDONLY), { code: 'ENOENT' })
  await t.rejects(openBeneath(base, 'nope/x', constants.O_RDONLY), { code: 'ENOENT' })
})

t.test('a directory swapped for a link after the walk began is refused, not followed', async t => {
  const { dir, base } = await tree(t)
  // the walk holds descriptors: a rename of what it already opened does not move it elsewhere
  const fh = await openBeneath(base, 'a/b', constants.O_RDONLY | constants.O_DIRECTORY)
  await fh.close()
  await mkdir(join(base, 'c'))
  await writeFile(join(base, 'c/x'), 'c')
  await rm(join(base, 'c'), { recursive: true })
  await symlink(join(dir, 'outside'), join(base, 'c'))
  await refusedWith(t, openBeneath(base, 'c/secret.txt', constants.O_RDONLY), /symbolic link/)
  await rename(join(base, 'a'), join(base, 'a2'))
  await t.rejects(openBeneath(base, 'a/b/file.txt', constants.O_RDONLY), { code: 'ENOENT' })
})

t.test('lstatBeneath: what is there, without following; undefined when missing', async t => {
  const { base } = await tree(t)
  t.ok((await lstatBeneath(base, 'link-file'))?.isSymbolicLink())
  t.ok((await lstatBeneath(base, 'a/b'))?.isDirectory())
  t.equal(await lstatBeneath(base, 'a/none'), undefined)
  await refusedWith(t, lstatBeneath(base, 'link-dir/secret.txt'), /symbolic link/)
})

t.test('resolveBeneath follows the tree\'s own links and reports one leaving it without looking outside', async t => {
  const { base } = await tree(t)
  t.same(await resolveBeneath(base, 'short/file.txt'), { kind: 'found', rel: 'a/b/file.txt' })
  t.same(await resolveBeneath(base, 'a/inner'), { kind: 'found', rel: 'a/b/file.txt' })
  t.same(await resolveBeneath(base, 'short'), { kind: 'found', rel: 'a/b' })
  t.same(await resolveBeneath(base, '.'), { kind: 'found', rel: '.' })
  t.same(await resolveBeneath(base, 'a/b/../b/./file.txt'), { kind: 'found', rel: 'a/b/file.txt' })
  t.same(await resolveBeneath(base, 'a/b/none.js'), { kind: 'missing', rel: 'a/b/none.js' })
  t.same(await resolveBeneath(base, 'top.txt/x'), { kind: 'missing', rel: 'top.txt/x' })
  t.match(await resolveBeneath(base, 'link-file'), { kind: 'escapes', via: /link-file -> \/.*secret\.txt/ })
  t.match(await resolveBeneath(base, 'link-dir/sub'), { kind: 'escapes' })
  t.same(await resolveBeneath(base, 'a/up'), { kind: 'escapes', via: 'a/up' })
  t.same(await resolveBeneath(base, '../outside/secret.txt'), { kind: 'escapes', via: '../outside/secret.txt' })
  // an escape says the same whether the target outside exists or not: no oracle for root's paths
  await symlink('../../outside/none', join(base, 'a/gone'))
  t.same((await resolveBeneath(base, 'a/gone')).kind, 'escapes')
})

t.test('resolveBeneath gives up on a loop of links', async t => {
  const { base } = await tree(t)
  await symlink('loop2', join(base, 'loop1'))
  await symlink('loop1', join(base, 'loop2'))
  t.match(await resolveBeneath(base, 'loop1'), { kind: 'escapes', via: /more than 40 links/ })
})

t.test('a base that is itself a link is refused', async t => {
  const { dir } = await tree(t)
  await refusedWith(t, resolveBeneath(join(dir, 'tree/link-dir'), '.'), /symbolic link, not a directory/)
})
