import t from 'tap'
import { parseAgentConfig } from '../../../agent/src/config/agent-config.js'
import { resolveSettings } from '../../../agent/src/config/settings.js'
import { thrown } from '../../helpers/thrown.js'

const N = '/bootstrap/stage/auth'

t.test('flag-named keys become a settings layer below agent.env and above tags', async t => {
  const values = parseAgentConfig(JSON.stringify({ repository: 'https://git.example.com/org/auth.git', 'health-timeout': 90, 'branch-map': 'stage=release' }), N)
  t.same(values, { repository: 'https://git.example.com/org/auth.git', 'health-timeout': '90', 'branch-map': 'stage=release' })
  const input = { flags: {}, env: {}, agentEnv: {}, tags: { Service: 'auth', Environment: 'stage', Repository: 'file:///tag.git' }, mode: 'aws' as const, remoteConfig: { source: `SSM parameter ${N}`, values } }
  const s = resolveSettings(input)
  t.equal(s.repository, 'https://git.example.com/org/auth.git', 'the parameter wins over the tag')
  t.equal(s.healthTimeoutMs, 90_000)
  t.equal(s.branch, 'release')
  t.equal(s.configParameter, N)
  t.equal(resolveSettings({ ...input, agentEnv: { BOOTSTRAP_REPOSITORY: 'file:///agent-env.git' } }).repository, 'file:///agent-env.git', 'agent.env wins over the parameter')
  t.equal(resolveSettings({ ...input, env: { BOOTSTRAP_CONFIG_PARAMETER: 'none' } }).configParameter, undefined)
})

t.test('errors name the parameter and the key, and list what is allowed', async t => {
  t.match(thrown(() => parseAgentConfig('{', N)), { code: 'AGENT_CONFIG_INVALID', message: /"\/bootstrap\/stage\/auth" is not valid JSON/ })
  t.match(thrown(() => parseAgentConfig('[]', N)), { message: /is not a JSON object/ })
  t.match(thrown(() => parseAgentConfig('{"service":"other"}', N)), { message: /unknown key "service"/, remedy: /repository/ })
  t.match(thrown(() => parseAgentConfig('{"repository":{"url":"x"}}', N)), { message: /key "repository" must be a string/ })
  const bad = thrown(() => resolveSettings({ flags: {}, env: {}, agentEnv: {}, tags: { Service: 'a', Environment: 'stage', Repository: 'file:///r.git' }, mode: 'aws', remoteConfig: { source: `SSM parameter ${N}`, values: { 'keep-releases': '0' } } }))
  t.match(bad, { message: /"keep-releases" in SSM parameter \/bootstrap\/stage\/auth = "0" is not valid/ })
})
