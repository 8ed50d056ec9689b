/**
 * The plumbing the small HTTP fixtures share (the IMDS server, the lifecycle and throttle
 * proxies): listen on 127.0.0.1 and a free port, read a request body whole, and stop at once.
 */
import type { IncomingMessage, Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** Listens on 127.0.0.1 and a port the kernel picks; resolves to the server's base URL. */
export const listenLocal = async (server: Server): Promise<string> => {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return `http://127.0.0.1:${port}`
}

/** Closes the server and its connections: SDK clients keep their sockets alive, and one idle
 * keep-alive socket would hold close() (and the test process) open. */
export const closeLocal = async (server: Server): Promise<void> => {
  server.closeAllConnections()
  await new Promise<void>(resolve => server.close(() => resolve()))
}

/** The whole request body (the proxies need the form before they decide where it goes). */
export const readBody = (req: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
