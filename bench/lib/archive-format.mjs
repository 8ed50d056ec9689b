// The release cache's archive format, measured on a release as deployed (bench/README.md, "The
// archive format"): the tar of the release (node-tar, as the agent's archive worker makes it),
// then per codec its size (what every booting instance downloads), the time to compress it (the
// publisher's CPU after CONTINUE) and to decompress it (on every cache-hit boot's critical
// path). In memory, so the figures are the codec's and not this machine's disk (extracting the
// same archive took 1.3-11 s from one run to the next beside the other engineers' suites).
import { readdirSync } from 'node:fs'
import { brotliCompressSync, brotliDecompressSync, constants, gunzipSync, gzipSync } from 'node:zlib'
import { create } from 'tar'
import { median } from './harness.mjs'

const brotli = quality => ({
  compress: b => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: quality, [constants.BROTLI_PARAM_SIZE_HINT]: b.length } }),
  decompress: b => brotliDecompressSync(b),
})
const gzip = level => ({ compress: b => gzipSync(b, { level }), decompress: b => gunzipSync(b) })

export const CODECS = { 'gzip -1': gzip(1), 'gzip -6': gzip(6), 'gzip -9': gzip(9), 'brotli q4': brotli(4), 'brotli q6': brotli(6) }

const timed = f => {
  const t0 = performance.now()
  const r = f()
  return [r, performance.now() - t0]
}

/** The tar of `dir` (without .git) and, per codec, { bytes, compressMs, decompressMs } (medians of `reps`). */
export const measureFormats = async (dir, reps = 3) => {
  const chunks = []
  for await (const c of create({ cwd: dir, portable: true }, readdirSync(dir).filter(n => n !== '.git').sort())) chunks.push(Buffer.from(c))
  const tar = Buffer.concat(chunks)
  const codecs = {}
  for (const [name, codec] of Object.entries(CODECS)) {
    const c = []
    const d = []
    let bytes = 0
    for (let i = 0; i < reps; i++) {
      const [z, cms] = timed(() => codec.compress(tar))
      const [, dms] = timed(() => codec.decompress(z))
      bytes = z.length
      c.push(cms)
      d.push(dms)
    }
    codecs[name] = { bytes, compressMs: median(c), decompressMs: median(d) }
  }
  return { tarBytes: tar.length, codecs }
}
