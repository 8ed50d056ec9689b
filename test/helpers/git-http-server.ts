/**
 * Test fixture: git smart HTTP with basic auth, i.e. the real `git http-backend` run as a CGI
 * behind a Node `http` server on 127.0.0.1 and a free port. This is what a private GitHub repo
 * looks like to git: 401 + `WWW-Authenticate: Basic` without valid credentials.
 * `stallMs` delays every response, to exercise client timeouts.
 */
import { spawn } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const BACKEND = '/usr/lib/git-core/git-http-backend'

export interface GitHttpRequest {
  method: string
  path: string
  authorized: boolean
}

export interface GitHttpServer {
  /** http URL of `<projectRoot>/<repoName>` (no credentials in it) */
  url(repoName: string): string
  requests: GitHttpRequest[]
  stop(): Promise<void>
}

const isAuthorized = (req: IncomingMessage, username: string, password: string): boolean => {
  const expected = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
  return req.headers.authorization === expected
}

/** Splits the CGI head (`Status:`, `Content-Type:` ...) from the body that follows it. */
const splitCgiHead = (buf: Buffer): { head: string; body: Buffer } | undefined => {
  for (const sep of ['\r\n\r\n', '\n\n']) {
    const at = buf.indexOf(sep)
    if (at >= 0) return { head: buf.subarray(0, at).toString('latin1'), body: buf.subarray(at + sep.length) }
  }
  return undefined
}

const runBackend = (projectRoot: string, req: IncomingMessage, res: ServerResponse, user: string) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1')
  const header = (name: string) => {
    const v = req.headers[name]
    return Array.isArray(v) ? v.join(', ') : (v ?? '')
  }
  const child = spawn(BACKEND, [], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: projectRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      CONTENT_TYPE: header('content-type'),
      REMOTE_USER: user,
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      // the backend gunzips request bodies itself when told they are gzipped
      HTTP_CONTENT_ENCODING: header('content-encoding'),
      // protocol v2 negotiation travels in this header
      HTTP_GIT_PROTOCOL: header('git-protocol'),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  req.pipe(child.stdin)
  child.stdin.on('error', () => {}) // the backend may exit before reading everything
  let pending: Buffer = Buffer.alloc(0)
  let headSent = false
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  child.stdout.on('data', (chunk: Buffer) => {
    if (headSent) return void res.write(chunk)
    pending = Buffer.concat([pending, chunk])
    const parsed = splitCgiHead(pending)
    if (!parsed) return
    headSent = true
    let status = 200
    for (const line of parsed.head.split(/\r?\n/)) {
      const colon = line.indexOf(':')
      if (colon < 0) continue
      const name = line.slice(0, colon).trim()
      const value = line.slice(colon + 1).trim()
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10)
      else res.setHeader(name, value)
    }
    res.statusCode = status
    res.write(parsed.body)
  })
  child.on('close', (code) => {
    if (!headSent) {
      res.statusCode = 500
      res.end(`git-http-backend exited ${code}: ${stderr}`)
    } else res.end()
  })
}

export const startGitHttpServer = async (opts: {
  projectRoot: string
  username: string
  password: string
  stallMs?: number
}): Promise<GitHttpServer> => {
  const requests: GitHttpRequest[] = []
  const timers = new Set<NodeJS.Timeout>()
  const server = createServer((req, res) => {
    const authorized = isAuthorized(req, opts.username, opts.password)
    requests.push({ method: req.method ?? '', path: req.url ?? '', authorized })
    const respond = () => {
      if (!authorized) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"', 'Content-Type': 'text/plain' })
        return void res.end('authentication required\n')
      }
      runBackend(opts.projectRoot, req, res, opts.username)
    }
    if (!opts.stallMs) return respond()
    const timer = setTimeout(() => {
      timers.delete(timer)
      respond()
    }, opts.stallMs)
    timers.add(timer)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo

  return {
    url: (repoName) => `http://127.0.0.1:${port}/${repoName}`,
    requests,
    async stop() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      // stalled or keep-alive connections would otherwise hold close() open forever
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
