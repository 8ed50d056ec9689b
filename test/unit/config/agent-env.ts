import t from 'tap'
import { parseAgentEnv, readAgentEnv } from '../../../agent/src/config/agent-env.js'
import { thrown } from '../../helpers/thrown.js'

t.test('systemd EnvironmentFile subset', async t => {
  t.same(parseAgentEnv([
    '# written by user-data',
    'BOOTSTRAP_LOG_LEVEL=debug',
    "BOOTSTRAP_BRANCH_MAP='test=test,prod=main'",
    'export AWS_REGION="eu-west-1"',
    'BOOTSTRAP_X="a \\"quoted\\" value"',
    '',
  ].join('\n'), 'agent.env'), {
    BOOTSTRAP_LOG_LEVEL: 'debug', BOOTSTRAP_BRANCH_MAP: 'test=test,prod=main', AWS_REGION: 'eu-west-1', BOOTSTRAP_X: 'a "quoted" value',
  })
  t.match(thrown(() => parseAgentEnv('NOT A LINE', '/etc/agent.env')), { code: 'AGENT_ENV_INVALID', message: /\/etc\/agent.env line 1/ })
  t.same(await readAgentEnv('/nonexistent/agent.env'), {}, 'a missing file is no configuration')
})
