/**
 * Validation of untrusted names: tag values, branch names, env keys. Each check returns an error
 * string (what is wrong, with the expected form) or undefined, so callers build one ConfigError
 * that quotes the value and says where it came from.
 */
const SERVICE_RE = /^[a-z0-9][a-z0-9-]{0,62}$/

/** Quote an untrusted value for an error message: JSON escaping shows newlines and control
 * characters instead of letting them break the log line, and long values are cut. */
export const quote = (value: string): string => {
  const cut = value.length > 80 ? `${value.slice(0, 80)}…` : value
  return JSON.stringify(cut)
}

export const checkServiceName = (v: string): string | undefined =>
  SERVICE_RE.test(v)
    ? undefined
    : `${quote(v)} is not a valid service name: expected lower-case letters, digits and '-', starting with a letter or digit, at most 63 characters (e.g. "auth-service")`

export const checkEnvironmentName = (v: string): string | undefined =>
  SERVICE_RE.test(v)
    ? undefined
    : `${quote(v)} is not a valid environment name: expected lower-case letters, digits and '-' (e.g. "stage")`

/**
 * git check-ref-format rules for a branch name (refs/heads/<name>), so a tag value can never be
 * read by git as an option or a revision expression.
 */
export const checkBranchName = (v: string): string | undefined => {
  const bad = (why: string) => `${quote(v)} is not a valid branch name: ${why}`
  if (v.length === 0) return bad('it is empty')
  if (v.length > 200) return bad('it is longer than 200 characters')
  if (v.startsWith('-')) return bad("it starts with '-'")
  if (v.startsWith('/') || v.endsWith('/')) return bad("it starts or ends with '/'")
  if (v.endsWith('.')) return bad("it ends with '.'")
  if (v.endsWith('.lock')) return bad("it ends with '.lock'")
  if (v === '@') return bad("'@' alone is not allowed")
  if (v.includes('..')) return bad("it contains '..'")
  if (v.includes('//')) return bad("it contains '//'")
  if (v.includes('@{')) return bad("it contains '@{'")
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(v)) {
    return bad("it contains a space, a control character or one of ~ ^ : ? * [ \\")
  }
  if (v.split('/').some(part => part.startsWith('.'))) return bad("a component starts with '.'")
  return undefined
}

export const checkRepositoryUrl = (v: string): string | undefined => {
  if (/[\x00-\x1f\x7f\s]/.test(v)) return `${quote(v)} is not a valid repository URL: it contains whitespace or control characters`
  if (v.startsWith('-')) return `${quote(v)} is not a valid repository URL: it starts with '-'`
  if (/^(https?|ssh|file):\/\/[^/]/.test(v) || /^file:\/\/\//.test(v)) return undefined
  // scp-like ssh syntax: git@github.com:org/repo.git
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/-]+$/.test(v)) return undefined
  return `${quote(v)} is not a valid repository URL: expected https://host/org/repo.git, ssh://git@host/org/repo.git, git@host:org/repo.git or file:///path/repo.git`
}

