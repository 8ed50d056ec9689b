import t from 'tap'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { collectingEvery, releaseMemory } from '../../../agent/src/core/gc.js'

t.test('collectingEvery passes every byte through unchanged, collecting on the way', async t => {
  const chunks = Array.from({ length: 50 }, (_, i) => Buffer.alloc(100_000, i))
  const out: Buffer[] = []
  await pipeline(Readable.from(chunks), collectingEvery(1_000_000), new Writable({ write(c: Buffer, _e, cb) { out.push(c); cb() } }))
  t.ok(Buffer.concat(out).equals(Buffer.concat(chunks)))
})

t.test('releaseMemory runs a full collection (and can run again)', async t => {
  let junk: unknown[] | undefined = Array.from({ length: 100_000 }, (_, i) => ({ i }))
  t.equal(junk.length, 100_000)
  junk = undefined
  releaseMemory()
  releaseMemory()
  t.pass('no throw; gc is taken once from a new context')
})
