/**
 * A static file server on 127.0.0.1 (a free port): the artifact store user-data downloads from.
 * Serves exactly the files it is given, and counts requests per path so a test can prove that a
 * second run did not download again.
 */
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'

export interface FileServer {
  url(path: string): string
  requests(path: string): number
  stop(): Promise<void>
}

export const startFileServer = async (files: Record<string, string>): Promise<FileServer> => {
  const counts = new Map<string, number>()
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    counts.set(path, (counts.get(path) ?? 0) + 1)
    const file = files[path]
    if (req.method !== 'GET' || file === undefined) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(file).size })
    createReadStream(file).pipe(res)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: path => `http://127.0.0.1:${port}${path}`,
    requests: path => counts.get(path) ?? 0,
    stop: () => new Promise(resolve => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
