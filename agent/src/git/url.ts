/**
 * Git remote URLs, checked once before git sees them. A URL reaches git's argv and `.git/config`,
 * so it must never carry a credential; and a URL is untrusted input (an instance tag), so it
 * must not be able to pass itself off as a git option.
 */
import { ConfigError } from '../core/errors.js'

export interface GitRemote {
  /** the URL exactly as git gets it (credential-free) */
  url: string
  transport: 'http' | 'ssh' | 'file'
  /** `scheme://host[:port]/` of an http(s) remote: the scope of the Authorization header */
  origin?: string
}

// `[user@]host:path`, git's scp-like ssh syntax: a colon before any slash, no scheme
const SCP_LIKE = /^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!\/\/)/
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** The URL with anything that could be a credential masked, for messages and logs. */
export const redactUrl = (url: string): string => {
  try {
    const u = new URL(url)
    const userinfo = u.username || u.password ? '***@' : ''
    return `${u.protocol}//${userinfo}${u.host}${u.pathname}${u.search || u.hash ? '?***' : ''}`
  } catch {
    // scp-like URLs are not WHATWG URLs; their user part is an account name (`git@`), not a secret
    return url.replace(/[?#].*$/, '?***')
  }
}

const invalid = (url: string, why: string, remedy: string) =>
  new ConfigError(`git repository URL "${redactUrl(url)}" ${why}`, remedy, 'GIT_URL_INVALID')

export const parseRemote = (url: string): GitRemote => {
  const expected =
    'use https://host/owner/repo.git, ssh://git@host/owner/repo.git, git@host:owner/repo.git or file:///path/repo.git'
  if (url.startsWith('-') || /[\s\0]/.test(url)) throw invalid(url, 'is not a URL', expected)
  if (!url.includes('://')) {
    if (SCP_LIKE.test(url)) return { url, transport: 'ssh' }
    throw invalid(url, 'is not a URL', expected)
  }
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw invalid(url, 'is not a URL', expected)
  }
  const credentialInUrl =
    u.protocol === 'ssh:' ? u.password !== '' : u.username !== '' || u.password !== ''
  if (credentialInUrl || u.search !== '' || u.hash !== '') {
    throw invalid(
      url,
      'carries credentials or a query string',
      'remove them from the URL and put the token or deploy key in the git credential secret',
    )
  }
  switch (u.protocol) {
    case 'https:':
    case 'http:':
      return { url, transport: 'http', origin: `${u.protocol}//${u.host}/` }
    case 'ssh:':
      return { url, transport: 'ssh' }
    case 'file:':
      return { url, transport: 'file' }
    default:
      throw invalid(url, `uses the unsupported scheme "${u.protocol}"`, expected)
  }
}

/** A token over plain http is readable by anyone on the path; only loopback (tests) may do it. */
export const isCleartextToRemoteHost = (remote: GitRemote): boolean =>
  remote.transport === 'http' &&
  remote.url.startsWith('http:') &&
  !LOOPBACK.has(new URL(remote.url).hostname)
