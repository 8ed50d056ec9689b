/**
 * releases/secret-scan.ts over real tar streams (node-tar's packer on a temp directory): a value
 * of the env file in a file's content (also split across chunks), in a name or a link target, a
 * line of a multi-line value; short values are not looked for; the entries and bytes are counted.
 */
import t from 'tap'
import { symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { create } from 'tar'
import { secretScan } from '../../../agent/src/releases/secret-scan.js'
import { rejected } from '../../helpers/thrown.js'

const SECRET = 'sk-live-7f3a9c2e5b1d'
const sink = () => new Writable({ write(_c, _e, cb) { cb() } })

/** the tar of `dir`, cut into chunks of `size` bytes, through the scan */
const scan = async (dir: string, secrets: Record<string, string>, size = 1 << 20) => {
  const chunks: Buffer[] = []
  for await (const c of create({ cwd: dir, portable: true }, ['.'])) chunks.push(Buffer.from(c as Uint8Array))
  const all = Buffer.concat(chunks)
  const pieces: Buffer[] = []
  for (let i = 0; i < all.length; i += size) pieces.push(all.subarray(i, i + size))
  const s = secretScan(secrets)
  await pipeline(Readable.from(pieces), s, sink())
  return s.stats
}

t.test('a clean release passes; entries and bytes are counted', async t => {
  const dir = t.testdir({ 'a.js': 'one', sub: { 'b.js': 'two!' } })
  const stats = await scan(dir, { API_KEY: SECRET, PORT: '3000', NODE_ENV: 'prod' })
  t.same(stats, { entries: 4, bytes: 7 }, '., a.js, sub, sub/b.js')
})

t.test('a value in a file refuses the archive, naming the file and the key, never the value', async t => {
  const dir = t.testdir({ node_modules: { x: { 'index.js': 'ok' } }, cache: { 'env.json': `{"API_KEY":"${SECRET}"}` } })
  const e = await rejected(() => scan(dir, { API_KEY: SECRET }))
  t.match(e, { code: 'CACHE_SECRET_IN_RELEASE', message: 'the release holds the value of secret key API_KEY in "./cache/env.json": not published' })
  t.notMatch(String((e as Error).message), SECRET)
})

t.test('a value split across two chunks is found', async t => {
  const padding = 'x'.repeat(600)
  const dir = t.testdir({ 'big.txt': `${padding}${SECRET}${padding}` })
  // 512-byte header, then the content: chunks of 521 bytes cut the value in two
  t.match(await rejected(() => scan(dir, { TOKEN: SECRET }, 521)), { code: 'CACHE_SECRET_IN_RELEASE', message: /TOKEN in "\.\/big\.txt"/ })
})

t.test('a value in a file name or a symlink target is found', async t => {
  const dir = t.testdir({ 'a.txt': 'fine' })
  writeFileSync(join(dir, `${SECRET}.log`), 'fine')
  t.match(await rejected(() => scan(dir, { API_KEY: SECRET })), { message: /API_KEY/ })
  const dir2 = t.testdir({ 'a.txt': 'fine' })
  symlinkSync(`/tmp/${SECRET}`, join(dir2, 'link'))
  t.match(await rejected(() => scan(dir2, { API_KEY: SECRET })), { message: /API_KEY in "\.\/link"/ })
})

t.test('one line of a multi-line value (a PEM key) is found alone', async t => {
  const line = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC'
  const dir = t.testdir({ 'key.txt': `-----BEGIN-----\n${line}\n` })
  t.match(await rejected(() => scan(dir, { TLS_KEY: `-----BEGIN PRIVATE KEY-----\n${line}\n-----END PRIVATE KEY-----` })), { message: /TLS_KEY/ })
})

t.test('values under 8 bytes are not looked for: "3000" or "true" are in any node_modules', async t => {
  const dir = t.testdir({ 'server.js': 'listen(3000); debug = true' })
  t.same(await scan(dir, { PORT: '3000', DEBUG: 'true' }), { entries: 2, bytes: 26 })
})

t.test('a stream that is no tar is refused', async t => {
  const s = secretScan({})
  t.ok(await rejected(() => pipeline(Readable.from([Buffer.alloc(2048, 0x41)]), s, sink())), 'strict parsing')
})
