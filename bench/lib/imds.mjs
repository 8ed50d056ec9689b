// A tiny IMDSv2 server for the benchmark (the tests have a fuller one in test/helpers, in
// TypeScript; this one only needs what both the agent and the baseline read): a token from
// PUT /latest/api/token, then instance-id, placement and tags/instance(/KEY). No
// autoscaling/target-lifecycle-state unless `lifecycleState` is given (the warm-pool section sets
// it, and the instance id of a group member, with `set()`): without it the instance is in no group.
// Like the real IMDS (its answers carry `Server: EC2ws` and `Connection: close`), it closes every
// connection after answering: a keep-alive server would hold the agent's process open until the
// server's idle timeout (5 s for Node's http server), which EC2 never does.
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'

export const startImds = async ({ instanceId, region, tags, lifecycleState }) => {
  const state = { instanceId, lifecycleState }
  const tokens = new Set()
  const server = createServer((req, res) => {
    const send = (status, body) => {
      res.writeHead(status, { 'content-type': 'text/plain', server: 'EC2ws', connection: 'close' })
      res.end(body)
    }
    const path = (req.url ?? '/').split('?')[0].replace(/^\/+/, '/')
    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return send(405, 'Method Not Allowed')
      const token = randomBytes(24).toString('base64url')
      tokens.add(token)
      res.setHeader('x-aws-ec2-metadata-token-ttl-seconds', req.headers['x-aws-ec2-metadata-token-ttl-seconds'] ?? '21600')
      return send(200, token)
    }
    if (!tokens.has(req.headers['x-aws-ec2-metadata-token'])) return send(401, 'Unauthorized')
    const md = path.startsWith('/latest/meta-data/') ? path.slice('/latest/meta-data/'.length) : undefined
    const answers = {
      'instance-id': state.instanceId,
      ...(state.lifecycleState === undefined ? {} : { 'autoscaling/target-lifecycle-state': state.lifecycleState }),
      'placement/region': region,
      'placement/availability-zone': `${region}a`,
      'tags/instance': Object.keys(tags).join('\n'),
    }
    if (md !== undefined && md in answers) return send(200, answers[md])
    const key = md?.startsWith('tags/instance/') ? decodeURIComponent(md.slice('tags/instance/'.length)) : undefined
    if (key !== undefined && Object.hasOwn(tags, key)) return send(200, tags[key])
    return send(404, 'Not Found')
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    /** changes what is served: { instanceId, lifecycleState } (lifecycleState undefined: 404) */
    set: patch => void Object.assign(state, patch),
    /** back to what it was started with */
    reset: () => void Object.assign(state, { instanceId, lifecycleState }),
    stop: () => {
      server.closeAllConnections()
      return new Promise(resolve => server.close(() => resolve()))
    },
  }
}
