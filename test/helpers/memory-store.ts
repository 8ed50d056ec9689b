/**
 * Test fixture: the CacheStore seam (releases/cache-store.ts) over a Map, for unit tests of the
 * cache's logic. `fail` makes the next calls of a method throw what S3 would have made the real
 * store throw (an AgentError of aws/retry.ts), to check what each failure becomes.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { AgentError } from '../../agent/src/core/errors.js'
import type { CacheStore } from '../../agent/src/releases/cache-store.js'

export type StoreMethod = 'getText' | 'download' | 'upload' | 'putText'

export interface MemoryStore extends CacheStore {
  objects: Map<string, Buffer>
  calls: { method: StoreMethod; key: string; ifAbsent?: boolean }[]
  /** the next `times` calls of `method` throw an AgentError with `code` */
  fail(method: StoreMethod, code: string, times?: number): void
}

export const memoryStore = (location = 's3://fleet/releases/stage'): MemoryStore => {
  const objects = new Map<string, Buffer>()
  const calls: MemoryStore['calls'] = []
  const failures: { method: StoreMethod; code: string; left: number }[] = []
  const url = (key: string) => `s3://fleet/${key}`
  const maybeFail = (method: StoreMethod, key: string) => {
    const f = failures.find(x => x.method === method && x.left > 0)
    if (!f) return
    f.left -= 1
    throw new AgentError(`AWS s3:${method === 'getText' || method === 'download' ? 'GetObject' : 'PutObject'} on ${url(key)} failed: ${f.code}`, { code: f.code, remedy: 'test' })
  }
  return {
    location, objects, calls, url,
    fail: (method, code, times = 1) => void failures.push({ method, code, left: times }),
    async getText(key) {
      calls.push({ method: 'getText', key })
      maybeFail('getText', key)
      return objects.get(key)?.toString('utf8')
    },
    async download(key, file, expectBytes) {
      calls.push({ method: 'download', key })
      maybeFail('download', key)
      const body = objects.get(key)
      if (!body) throw new AgentError(`AWS s3:GetObject on ${url(key)} failed: NoSuchKey (HTTP 404)`, { code: 'AWS_NOT_FOUND', remedy: 'test' })
      if (body.length !== expectBytes) throw new AgentError(`${url(key)} is ${body.length} bytes, its index entry says ${expectBytes}: truncated or replaced`, { code: 'CACHE_ARCHIVE_SIZE', remedy: 'test' })
      writeFileSync(file, body, { mode: 0o600 })
    },
    async upload(key, file) {
      calls.push({ method: 'upload', key })
      maybeFail('upload', key)
      objects.set(key, readFileSync(file))
    },
    async putText(key, text, { ifAbsent }) {
      calls.push({ method: 'putText', key, ifAbsent })
      maybeFail('putText', key)
      if (ifAbsent && objects.has(key)) return 'exists'
      objects.set(key, Buffer.from(text))
      return 'written'
    },
  }
}

/** copies an object's bytes to a file (to look into an archive) */
export const saveObject = (store: MemoryStore, key: string, file: string): void => {
  const body = store.objects.get(key)
  if (!body) throw new Error(`no object ${key}`)
  writeFileSync(file, body)
}
