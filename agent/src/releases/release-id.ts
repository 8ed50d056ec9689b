/**
 * Release ids: `<UTC time>-<first 12 of the commit>`, the name of a release's directory and of its
 * record. Parsing one is also the check that keeps `..` and `/` out of every path built from it.
 */
import { AgentError } from '../core/errors.js'

/** `20261124T021500Z-<first 12 of sha>`: sorts by time as a string, UTC, no `:` (filesystem-safe). */
export const releaseId = (now: Date, commit: string): string => {
  if (!/^[0-9a-f]{12,64}$/i.test(commit)) {
    throw new AgentError(`not a commit SHA: "${commit}"`, {
      code: 'RELEASE_ID_INVALID',
      remedy: 'pass the full hex commit SHA that was fetched',
    })
  }
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '')
  return `${stamp}-${commit.slice(0, 12).toLowerCase()}`
}

/**
 * The id of a new release of `commit`, other than `live`: the live release carries the same id
 * when it is this commit deployed within the same second by a run that did not finish (killed
 * after `start`, so it was never marked good and is deployed again). That directory serves; the
 * new release takes the next second's id instead of cloning into it.
 */
export const newReleaseId = (now: Date, commit: string, live: string | undefined): string => {
  const id = releaseId(now, commit)
  return id === live ? releaseId(new Date(now.getTime() + 1000), commit) : id
}

const ID_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-([0-9a-f]{12})$/

/** Undefined for anything that is not a release id, which also keeps `..` and `/` out of paths. */
export const parseReleaseId = (id: string): { createdAt: Date; shortSha: string } | undefined => {
  const m = ID_RE.exec(id)
  if (!m) return undefined
  const [, y, mo, d, h, mi, s, sha] = m
  const createdAt = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`)
  // Reject impossible dates (month 13, Feb 30) that Date would roll over or refuse.
  if (Number.isNaN(createdAt.getTime()) || releaseId(createdAt, `${sha}`) !== id) return undefined
  return { createdAt, shortSha: `${sha}` }
}
