/**
 * `bootstrap-agent rollout` end to end against moto: the real CLI (dist/bin.js) with the SDK's
 * own endpoint variables, instances and the document seeded with the SDK. moto records
 * SendCommand (document, targets, parameters: asserted from its request recorder and from
 * ListCommands) but runs nothing: every GetCommandInvocation answers Success with empty output,
 * so a row honestly says outcome "Success", commit "unknown" (moto's ExecutionElapsedTime is a
 * constant PT5M). The batching and the error budget are proven in test/unit/rollout.ts, the
 * document's script in test/integration/ssm-document.ts. The recorder also proves that
 * iam/operator-policy.json has the actions rollout calls (run-reports.ts holds it to exactly
 * those of rollout, history and fleet).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CreateTagsCommand, DescribeImagesCommand, EC2Client, RunInstancesCommand, StopInstancesCommand } from '@aws-sdk/client-ec2'
import { CreateDocumentCommand, ListCommandsCommand, SSMClient } from '@aws-sdk/client-ssm'
import { startMoto, type RecordedAction } from '../helpers/moto.js'
import { REPO, runCli } from '../helpers/sandbox.js'

const moto = await startMoto()
t.teardown(() => moto.stop())

const region = 'us-east-1'
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true'
const aws = { region, endpoint: moto.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }
const ec2 = new EC2Client(aws)
const ssm = new SSMClient(aws)
const env = {
  AWS_ENDPOINT_URL: moto.endpoint,
  AWS_REGION: region,
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
}

const imageId = (await ec2.send(new DescribeImagesCommand({}))).Images?.[0]?.ImageId
const launch = async (tags: Record<string, string>): Promise<string> => {
  const r = await ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1, InstanceType: 't3.micro' }))
  const id = r.Instances?.[0]?.InstanceId ?? ''
  await ec2.send(new CreateTagsCommand({ Resources: [id], Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }))
  return id
}
const stage = (await Promise.all([1, 2, 3].map(() => launch({ Service: 'app', Environment: 'stage' })))).sort()
const prod = await launch({ Service: 'app', Environment: 'prod' })
await launch({ Service: 'other', Environment: 'stage' })
const stopped = await launch({ Service: 'app', Environment: 'stage' })
await ec2.send(new StopInstancesCommand({ InstanceIds: [stopped] }))
const customKeys = await launch({ 'app:service': 'app', 'app:env': 'stage' })

const documentText = readFileSync(join(REPO, 'ssm/rebootstrap.json'), 'utf8')
await ssm.send(new CreateDocumentCommand({ Name: 'bootstrap-agent-rebootstrap', Content: documentText, DocumentType: 'Command', DocumentFormat: 'JSON' }))

interface Row { instanceId: string; status: string; outcome: string; commit: string; durationMs?: number; ok: boolean; commandId?: string }
const parse = (stdout: string) => {
  const lines = stdout.trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
  const summary = lines.pop()?.['summary'] as Record<string, unknown> | undefined
  return { rows: lines as unknown as Row[], summary }
}

/** the SendCommand requests recorded by moto, decoded (the SSM API is JSON) */
const sendCommands = (actions: RecordedAction[]) =>
  actions.filter(a => a.action === 'SendCommand').map(a => JSON.parse(a.body ?? '{}') as { DocumentName: string; InstanceIds: string[]; Parameters: Record<string, string[]>; MaxConcurrency: string; TimeoutSeconds: number })

const exercised = new Set<string>()
const record = (actions: RecordedAction[]) => {
  for (const a of actions) exercised.add(`${a.service}:${a.action}`)
}

t.test('rollout sends the document to the tagged, running instances, in batches', async t => {
  await moto.startRecording()
  const r = await runCli(['rollout', '--service', 'app', '--environment', 'stage', '--max-concurrency', '2', '--branch', 'release/1.2', '--timeout', '900'], env)
  await moto.stopRecording()
  t.equal(r.code, 0, r.stderr)
  const actions = await moto.recordedActions()
  record(actions)
  const sent = sendCommands(actions)
  t.same(sent.map(s => s.InstanceIds), [stage.slice(0, 2), stage.slice(2)], 'batches of 2, the stopped and the other-tagged instances left out')
  t.notOk(sent.some(s => s.InstanceIds.includes(prod)), 'not the prod instance of the same service')
  for (const s of sent) {
    t.equal(s.DocumentName, 'bootstrap-agent-rebootstrap')
    t.same(s.Parameters, { dryRun: ['false'], executionTimeout: ['900'], branch: ['release/1.2'] })
  }
  t.same([...new Set(actions.map(a => `${a.service}:${a.action}`))].sort(), ['ec2:DescribeInstances', 'ssm:GetCommandInvocation', 'ssm:SendCommand'])

  const { rows, summary } = parse(r.stdout)
  t.same(rows.map(x => x.instanceId), stage)
  for (const row of rows) t.match(row, { status: 'Success', outcome: 'Success', commit: 'unknown', ok: true, durationMs: 300_000 }, 'moto: Success with no output')
  t.match(summary, { service: 'app', environment: 'stage', failures: 0, notSent: 0, withinBudget: true, concurrency: 2, maxErrors: 0 })
  t.match(r.stderr, /rollout: app \(stage\): 3 instance\(s\), document bootstrap-agent-rebootstrap, branch release\/1\.2\n[^]*batch 2\/2: 1 ok, 0 failed/)

  // what SSM (moto) holds, through ListCommands: the document and the parameters. Not the targets:
  // moto 5.2.5 adds every instance it knows to a command sent without Targets (Command.
  // _get_instance_ids_from_targets with no filter), so its InstanceIds there are not what was sent;
  // the recorder above shows the request itself.
  const listed = (await ssm.send(new ListCommandsCommand({}))).Commands ?? []
  t.same(listed.map(c => [c.DocumentName, c.Parameters]), sent.map(() => ['bootstrap-agent-rebootstrap', { dryRun: ['false'], executionTimeout: ['900'], branch: ['release/1.2'] }]))
})

t.test('dry run, custom tag keys, percentages, a named document', async t => {
  await moto.startRecording()
  const r = await runCli(['rollout', '--service', 'app', '--environment', 'stage', '--dry-run', '--max-concurrency', '100%', '--max-errors', '50%', '--document', 'bootstrap-agent-rebootstrap', '--json'],
    { ...env, BOOTSTRAP_TAG_KEY_SERVICE: 'app:service', BOOTSTRAP_TAG_KEY_ENVIRONMENT: 'app:env' })
  await moto.stopRecording()
  t.equal(r.code, 0, r.stderr)
  const actions = await moto.recordedActions()
  record(actions)
  t.same(sendCommands(actions).map(s => [s.InstanceIds, s.Parameters]), [[[customKeys], { dryRun: ['true'], executionTimeout: ['2700'] }]])
  t.match(parse(r.stdout).summary, { dryRun: true, targets: [customKeys], withinBudget: true })
})

t.test('bad input: exit 2 before any AWS call (the whole table: test/unit/rollout.ts)', async t => {
  await moto.startRecording()
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['--environment', 'stage'], env, /error \[CONFIG_INVALID\]: rollout needs --service\n/],
    [['--service', 'app', '--environment', 'stage', '--max-concurrency', '0'], env, /--max-concurrency "0" is not valid/],
    [['--service', 'app', '--environment', 'stage', '--local'], env, /rollout does not take --local/],
    [['--service', 'app', '--environment', 'stage'], { ...env, AWS_REGION: '' }, /no AWS region/],
  ]
  for (const [args, e, message] of cases) {
    const r = await runCli(['rollout', ...args], e)
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr, message)
  }
  await moto.stopRecording()
  t.same(await moto.recordedActions(), [], 'no AWS call was made')
})

t.test('no matching instance: exit 2, nothing sent', async t => {
  await moto.startRecording()
  const r = await runCli(['rollout', '--service', 'app', '--environment', 'qa'], env)
  await moto.stopRecording()
  t.equal(r.code, 2)
  t.match(r.stderr, /error \[ROLLOUT_NO_INSTANCES\]: no running instance is tagged Service=app and Environment=qa in us-east-1\n/)
  t.same((await moto.recordedActions()).map(a => a.action), ['DescribeInstances'])
})

t.test('iam/operator-policy.json has every action rollout calls (exactly, with history and fleet: run-reports.ts); the agent policy none of them', async t => {
  interface Statement { Action: string | string[] }
  const actions = (file: string) => new Set((JSON.parse(readFileSync(join(REPO, file), 'utf8')) as { Statement: Statement[] }).Statement.flatMap(s => (Array.isArray(s.Action) ? s.Action : [s.Action])))
  const operator = actions('iam/operator-policy.json')
  t.same([...exercised].filter(a => !operator.has(a)).sort(), [])
  const agent = actions('iam/agent-policy.json')
  t.same([...exercised].filter(a => agent.has(a)), [], 'the instance profile gets no rollout action')
})
