import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { sha256File } from '../../../agent/src/core/file-hash.js'

t.test('sha256 of a file, whole or a byte range, hex or base64; more than one buffer of it', async t => {
  const data = randomBytes((1 << 20) * 2 + 12345)
  const file = join(t.testdir(), 'f')
  writeFileSync(file, data)
  const sha = (b: Buffer, enc: 'hex' | 'base64' = 'hex') => createHash('sha256').update(b).digest(enc)
  t.equal(await sha256File(file), sha(data))
  t.equal(await sha256File(file, 'base64'), sha(data, 'base64'))
  t.equal(await sha256File(file, 'base64', { start: 1000, end: 1_500_000 }), sha(data.subarray(1000, 1_500_000), 'base64'))
  t.equal(await sha256File(file, 'hex', { start: data.length - 10, end: data.length + 100 }), sha(data.subarray(data.length - 10)), 'a range past the end stops at it')
  const empty = join(t.testdir(), 'e')
  writeFileSync(empty, '')
  t.equal(await sha256File(empty), sha(Buffer.alloc(0)))
})
