import t from 'tap'
import type { InstanceIdentity } from '../../../agent/src/seams/identity.js'
import { resolveWithAgentConfig } from '../../../agent/src/config/resolve-settings.js'
import type { Seams } from '../../../agent/src/run/context.js'
import type { SecretsSource } from '../../../agent/src/secrets/source.js'
import { rejected } from '../../helpers/thrown.js'

/** A parameter store of one map; records which names were read. */
const seamsWith = (params: Record<string, string>) => {
  const read: string[] = []
  const source: SecretsSource = {
    description: 'test parameters',
    async getSecrets() {
      return new Map()
    },
    async getParametersByPath() {
      return []
    },
    async getParameter(name) {
      read.push(name)
      return params[name]
    },
  }
  // resolveWithAgentConfig uses the secrets seam alone
  const seams = { secrets: () => source } as unknown as Seams
  return { seams, read }
}

const identity = (tags: Record<string, string>): InstanceIdentity => ({
  instanceId: 'i-0123456789abcdef0', region: 'eu-west-1', availabilityZone: 'eu-west-1a', tags, lifecycleState: undefined, source: 'test',
})

const input = { flags: {}, env: {}, agentEnv: {}, mode: 'aws' as const }

t.test('the parameter alone can supply the repository and the branch map: two tags are enough', async t => {
  const { seams, read } = seamsWith({
    '/bootstrap/stage/auth': JSON.stringify({ repository: 'https://git.example.com/org/auth.git', 'branch-map': 'stage=release' }),
  })
  const { settings, configSource } = await resolveWithAgentConfig(input, identity({ Service: 'auth', Environment: 'stage' }), seams)
  t.equal(settings.repository, 'https://git.example.com/org/auth.git')
  t.equal(settings.branch, 'release')
  t.equal(configSource, 'SSM parameter /bootstrap/stage/auth')
  t.same(read, ['/bootstrap/stage/auth'])
})

t.test('no parameter: the usual error names the missing repository and how to set it', async t => {
  const { seams, read } = seamsWith({})
  const err = rejected(() => resolveWithAgentConfig(input, identity({ Service: 'auth', Environment: 'stage' }), seams))
  t.match(await err, { code: 'CONFIG_INVALID', message: /repository URL is not set/, remedy: /Repository/ })
  t.same(read, ['/bootstrap/stage/auth'], 'the parameter was looked for first')
})

t.test('a missing service is reported before any parameter is read', async t => {
  const { seams, read } = seamsWith({})
  t.match(await rejected(() => resolveWithAgentConfig(input, identity({ Environment: 'stage' }), seams)), { message: /service is not set/ })
  t.same(read, [])
})

t.test('"none" turns the parameter off: nothing is read', async t => {
  const { seams, read } = seamsWith({})
  const tags = { Service: 'auth', Environment: 'stage', Repository: 'https://git.example.com/org/auth.git' }
  const { configSource } = await resolveWithAgentConfig({ ...input, env: { BOOTSTRAP_CONFIG_PARAMETER: 'none' } }, identity(tags), seams)
  t.equal(configSource, undefined)
  t.same(read, [])
})
