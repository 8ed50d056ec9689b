import t from 'tap'
import { operatorRegion, operatorReportGroup, parseOperatorTarget } from '../../../agent/src/commands/operator-args.js'
import { parseCli } from '../../../agent/src/config/cli-args.js'
import { thrown } from '../../helpers/thrown.js'

const ACCEPTED = new Set(['service', 'environment', 'report-log-group', 'tag-key-service', 'tag-key-environment', 'json'])
const target = (args: string[], env: NodeJS.ProcessEnv = {}) => parseOperatorTarget('fleet', parseCli(['fleet', ...args]), env, ACCEPTED)

t.test('the service, environment and tag keys, validated; other flags refused', async t => {
  t.same(target(['--service', 'api', '--environment', 'prod']), { service: 'api', environment: 'prod', tagKeys: { service: 'Service', environment: 'Environment' } })
  t.same(target(['--service', 'api', '--environment', 'prod', '--tag-key-service', 'app:svc'], { BOOTSTRAP_TAG_KEY_ENVIRONMENT: 'Env' }).tagKeys, { service: 'app:svc', environment: 'Env' })
  t.match(thrown(() => target(['--environment', 'prod'])), { exitCode: 2, message: 'fleet needs --service' })
  t.match(thrown(() => target(['--service', 'API!', '--environment', 'prod'])), { exitCode: 2, message: /--service "API!" is not a valid service name/ })
  t.match(thrown(() => target(['--service', 'api', '--environment', 'prod', '--branch', 'x'])), { exitCode: 2, message: 'fleet does not take --branch', remedy: 'run bootstrap-agent fleet --help' })
  t.match(thrown(() => target(['--service', 'api', '--environment', 'prod', '--tag-key-service', 'a\u0000b'])), { exitCode: 2, message: /is not a valid tag key/ })
})

t.test('the report log group: flag, then environment, then the README name; placeholders replaced', async t => {
  const q = { service: 'api', environment: 'prod', tagKeys: { service: 'Service', environment: 'Environment' } }
  t.equal(operatorReportGroup(parseCli(['fleet']), {}, q), '/bootstrap-agent/prod/api')
  t.equal(operatorReportGroup(parseCli(['fleet']), { BOOTSTRAP_REPORT_LOG_GROUP: '/runs/{service}' }, q), '/runs/api')
  t.equal(operatorReportGroup(parseCli(['fleet', '--report-log-group', '/mine']), { BOOTSTRAP_REPORT_LOG_GROUP: '/runs' }, q), '/mine')
  t.match(thrown(() => operatorReportGroup(parseCli(['fleet', '--report-log-group', 'a b']), {}, q)), { exitCode: 2, message: /--report-log-group = "a b" is not valid/ })
})

t.test('the region: AWS_REGION or AWS_DEFAULT_REGION; never IMDSv1', async t => {
  const env: NodeJS.ProcessEnv = { AWS_DEFAULT_REGION: 'eu-west-1' }
  t.equal(operatorRegion(env), 'eu-west-1')
  t.equal(env['AWS_EC2_METADATA_V1_DISABLED'], 'true')
  t.match(thrown(() => operatorRegion({})), { exitCode: 2, message: 'no AWS region: AWS_REGION is not set' })
})
