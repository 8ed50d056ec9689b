// A small HTTP service deployed by the demo. Its secret arrives in process.env (loaded from the
// env file by the agent's preload); /health shows a fingerprint of it, never the value.
const http = require('node:http')
const { createHash } = require('node:crypto')
const { readFileSync, realpathSync } = require('node:fs')
const { basename } = require('node:path')

const port = Number(process.env.PORT || 4780)
const release = JSON.parse(readFileSync(`${__dirname}/release.json`, 'utf8'))
const fingerprint = (v) => (v === undefined ? null : createHash('sha256').update(v).digest('hex').slice(0, 12))

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({
      ok: true,
      service: process.env.BOOTSTRAP_SERVICE,
      greeting: release.greeting,
      release: basename(realpathSync(__dirname)),
      apiKeyFingerprint: fingerprint(process.env.API_KEY),
      pid: process.pid,
    }))
    return
  }
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end(`${release.greeting}\n`)
})
server.listen(port, '127.0.0.1', () => console.log(`demo-service listening on 127.0.0.1:${port}`))
process.on('SIGINT', () => server.close(() => process.exit(0)))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
