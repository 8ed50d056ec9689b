/**
 * The CacheStore seam: the subset of object storage the release cache uses, on keys inside one
 * bucket (releases/cache-index.ts builds them). The AWS implementation (aws/s3-cache-store.ts) is
 * S3 through the SDK with the agent's retry policy; unit tests fake this interface. Every method
 * throws an AgentError naming the action and the object when it gives up; the callers
 * (releases/cache-restore.ts, cache-publish.ts) turn any of them into a warning and the source path.
 */
export interface CacheStore {
  /** s3://bucket/prefix, for messages */
  readonly location: string
  /** `s3://bucket/<key>`: how a message names one object */
  url(key: string): string
  /** a small document (index entry, branch pointer); undefined when there is none; more than
   * `maxBytes` is an error (an entry is a few hundred bytes; anything this large is not one) */
  getText(key: string, maxBytes: number): Promise<string | undefined>
  /** the object streamed into `file` (created 0600, rewritten by each attempt); an object whose
   * size is not `expectBytes` fails before its body is read */
  download(key: string, file: string, expectBytes: number): Promise<void>
  /** `file` streamed to `key` (multipart when large), with S3's own SHA-256 checksum */
  upload(key: string, file: string, contentType: string): Promise<void>
  /** a small document; `ifAbsent`: written only when no object has that key (S3's conditional
   * write), else 'exists' */
  putText(key: string, text: string, opts: { ifAbsent: boolean }): Promise<'written' | 'exists'>
}
