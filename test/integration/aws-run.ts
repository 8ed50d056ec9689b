/**
 * AWS mode end to end: the real agent CLI (`run --reason boot`, no --local) against moto (Secrets
 * Manager, Parameter Store, EC2 tags, Auto Scaling describe calls) behind the lifecycle proxy
 * (CompleteLifecycleAction, RecordLifecycleActionHeartbeat, injected failures), an IMDSv2-only
 * metadata server, and a private repository over smart HTTP with basic auth. Every AWS call the
 * agent makes goes through the proxy (AWS_ENDPOINT_URL), so moto's recorder plus the proxy's own
 * log are the complete list of actions: the proof that iam/agent-policy.json lists exactly them,
 * and that `plan` only reads names. Invariant 6 (a waiting instance always gets exactly one
 * answer) is checked on success (CONTINUE), on a failed health check, and on exit-2 failures.
 */
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { CreateTagsCommand } from '@aws-sdk/client-ec2'
import { CreateSecretCommand, DeleteSecretCommand } from '@aws-sdk/client-secrets-manager'
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import { startAwsWorld } from '../helpers/aws-world.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { startGitHttpServer } from '../helpers/git-http-server.js'
import { findLeaks, leaksAfterRun } from '../helpers/leak-scan.js'
import type { LifecycleCall } from '../helpers/lifecycle-proxy.js'
import type { RecordedAction } from '../helpers/moto.js'
import { appFiles, freePort, getJson, removeSandbox, REPO, runCli, sandboxDir, type CliResult } from '../helpers/sandbox.js'

// ---------------------------------------------------------------------------------------------
// servers, each stopped in teardown (registered before the next one starts)

const dir = sandboxDir('aws-run')
const root = join(dir, 'root')
t.teardown(() => removeSandbox(dir, root))

const world = await startAwsWorld(t)
const { moto, proxy, sm, ssm, ec2 } = world

const token = `tok-${randomBytes(16).toString('hex')}`
const apiKeyMark = `key-${randomBytes(16).toString('hex')}`
const apiKey = `${apiKeyMark}\n"quoted" $HOME #hash = back\\slash 'single' \`tick\` ünïcode`
const dbPass = `db-${randomBytes(16).toString('hex')}`
const SECRETS = [token, apiKeyMark, dbPass]
const fp = (v: string) => createHash('sha256').update(v).digest('hex')

const port = await freePort()
const repo = await createFixtureRepo({
  root: join(dir, 'git'),
  name: 'app',
  branches: { stage: appFiles({ port, greeting: 'stage v1' }), main: appFiles({ port, greeting: 'main' }) },
})
const git = await startGitHttpServer({ projectRoot: join(dir, 'git'), username: 'deploy', password: token })
t.teardown(() => git.stop())
const repoUrl = git.url('app.git')

// ---------------------------------------------------------------------------------------------
// seed moto with the SDK (directly, not through the proxy: seeding is not the agent's traffic)

const service = 'app'
const hookName = 'bootstrap-launch'
const apiSecretId = `stage/${service}`
const gitSecretId = `git/${service}`
const createApiSecret = () => sm.send(new CreateSecretCommand({ Name: apiSecretId, SecretString: JSON.stringify({ API_KEY: apiKey }) }))

await createApiSecret()
await sm.send(new CreateSecretCommand({ Name: gitSecretId, SecretString: JSON.stringify({ username: 'deploy', token }) }))
await ssm.send(new PutParameterCommand({ Name: `/stage/${service}/db/password`, Value: dbPass, Type: 'SecureString' }))

const { asgName, instanceId } = await world.createGroup({ hooks: [{ name: hookName }] })

const TAGS = { Service: service, Environment: 'stage', Repository: repoUrl }
const imds = await world.startImds({ instanceId, tags: TAGS, lifecycleState: 'InService' })

// ---------------------------------------------------------------------------------------------
// the agent as systemd would start it on the instance, AWS endpoints pointed at the fixtures

// every run also sends its run report (test/integration/run-reports.ts has the reports' own cases)
await world.createLogGroup(`/bootstrap-agent/stage/${service}`)
const ENV = world.agentEnv(imds.endpoint, { BOOTSTRAP_GIT_CREDENTIAL_SECRET: gitSecretId, BOOTSTRAP_REPORT_LOG_GROUP: '/bootstrap-agent/{environment}/{service}' })
const RUN = ['run', '--reason', 'boot', '--root', root, '--json', '--stable-window', '1', '--heartbeat-interval', '1']

const envFile = join(root, `etc/bootstrap-agent/env/${service}.env`)
const serviceDir = join(root, `srv/${service}`)
const url = `http://127.0.0.1:${port}/health`
const current = () => readlinkSync(join(serviceDir, 'current'))

interface PhaseJson { name: string; status: string; detail?: string }
interface StateJson {
  outcome: string
  exitCode?: number
  commit?: string
  lifecycle?: string
  phases: PhaseJson[]
  error?: { code: string; message: string; remedy: string }
}
const state = (): StateJson => JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8')) as StateJson
const phase = (name: string) => state().phases.find(p => p.name === name)

/** `service:Action` of every AWS call the agent made (IAM prefixes), collected across all cases. */
const exercised = new Set<string>()
/** recorder signing names -> IAM service prefixes (identical for these five services) */
const IAM_PREFIX: Record<string, string> = { secretsmanager: 'secretsmanager', ssm: 'ssm', ec2: 'ec2', autoscaling: 'autoscaling', logs: 'logs' }
const iamName = (a: { service: string; action: string }) => `${IAM_PREFIX[a.service] ?? `unmapped(${a.service})`}:${a.action}`

interface Recorded {
  r: CliResult
  /** requests that reached moto */
  moto: RecordedAction[]
  /** requests the proxy answered itself (lifecycle actions, accepted or not) */
  lifecycle: LifecycleCall[]
  /** both, as IAM `service:Action` names */
  actions: Set<string>
}

/** Runs the CLI with moto's recorder on; everything the agent called is added to `exercised`. */
const recordRun = async (args: string[], env: Record<string, string> = ENV): Promise<Recorded> => {
  const before = proxy.calls.length
  await moto.startRecording()
  let r: CliResult
  try {
    r = await runCli(args, env)
  } finally {
    await moto.stopRecording()
  }
  const recorded = await moto.recordedActions()
  const lifecycle = proxy.calls.slice(before)
  const actions = new Set([...recorded.map(iamName), ...lifecycle.map(c => `autoscaling:${c.action}`)])
  for (const a of actions) exercised.add(a)
  return { r, moto: recorded, lifecycle, actions }
}

const noLeaks = (t: Test, r: CliResult) =>
  t.same(leaksAfterRun(SECRETS, root, envFile, r), [], 'no secret value outside the env file and the service')

const completions = (calls: LifecycleCall[]) => calls.filter(c => c.action === 'CompleteLifecycleAction')
const heartbeats = (calls: LifecycleCall[]) => calls.filter(c => c.action === 'RecordLifecycleActionHeartbeat' && c.status === 200)
/** asserts the exit code; the agent's output is shown only when it is not the expected one */
const exits = (t: Test, r: CliResult, code: number) =>
  t.equal(r.code, code, `exit ${code}`, r.code === code ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-6000) })

// the IAM policy, as shipped
interface PolicyStatement { Action: string | string[] }
const policy = JSON.parse(readFileSync(join(REPO, 'iam/agent-policy.json'), 'utf8')) as { Statement: PolicyStatement[] }
const POLICY = new Set(policy.Statement.flatMap(s => (Array.isArray(s.Action) ? s.Action : [s.Action])))

const subsetOfPolicy = (t: Test, actions: Set<string>) =>
  t.same([...actions].filter(a => !POLICY.has(a)).sort(), [], 'every AWS action called is in iam/agent-policy.json')

t.test('1. a boot run deploys, heartbeats and completes the hook with CONTINUE', async t => {
  proxy.setActive([{ instanceId, hookName }])
  const { r, lifecycle, actions } = await recordRun(RUN)
  exits(t, r, 0)

  const body = await getJson(url)
  t.equal(body['greeting'], 'stage v1', 'the stage branch is serving')
  t.equal(body['apiKey'], fp(apiKey), 'API_KEY from Secrets Manager reached process.env byte-exact')
  t.match(readFileSync(envFile, 'utf8'), /^DB_PASSWORD=/m, 'the SSM SecureString parameter is in the env file')
  t.equal(statSync(envFile).mode & 0o777, 0o600)

  const beats = heartbeats(lifecycle)
  t.ok(beats.length >= 1, `heartbeats sent while the run went on (${beats.length})`)
  t.ok(beats.every(b => b.instanceId === instanceId && b.hookName === hookName && b.asgName === asgName), 'for this instance, group and hook')
  t.match(completions(lifecycle), [{ instanceId, hookName, asgName, result: 'CONTINUE', status: 200 }], 'exactly one completion: CONTINUE')
  t.equal(completions(lifecycle).length, 1)

  const s = state()
  t.equal(s.outcome, 'success')
  t.equal(s.commit, await repo.head('stage'))
  t.match(s.lifecycle, new RegExp(`asg ${asgName}, hook ${hookName}`))
  t.match(phase('complete'), { status: 'ok', detail: /CONTINUE sent/ })
  t.match(phase('identify')?.detail, new RegExp(`${instanceId} via IMDSv2`))
  t.ok(git.requests.some(q => q.authorized), 'the private repository was read with the token from Secrets Manager')
  for (const a of ['secretsmanager:BatchGetSecretValue', 'ssm:GetParametersByPath', 'autoscaling:DescribeAutoScalingInstances', 'autoscaling:DescribeLifecycleHooks']) {
    t.ok(actions.has(a), `called ${a}`)
  }
  t.equal(imds.tokenlessRequests, 0, 'IMDSv1 was never tried')
  t.ok(imds.requests.some(q => q.method === 'PUT'), 'IMDSv2 tokens were fetched')
  subsetOfPolicy(t, actions)
  noLeaks(t, r)
})

t.test('2. a release failing its health check: one ABANDON, exit 1, the previous release serves', async t => {
  const releaseBefore = current()
  await repo.commit('stage', { 'server.js': appFiles({ port, greeting: 'broken', crash: true })['server.js'] ?? '' })
  proxy.setActive([{ instanceId, hookName }])
  const { r, lifecycle, actions } = await recordRun([...RUN, '--health-timeout', '6'])
  exits(t, r, 1)
  t.match(completions(lifecycle), [{ instanceId, hookName, asgName, result: 'ABANDON', status: 200 }], 'exactly one completion: ABANDON')
  t.equal(completions(lifecycle).length, 1)
  t.equal(current(), releaseBefore, 'current points at the previous release again')
  t.equal((await getJson(url))['greeting'], 'stage v1', 'the previous release is serving')
  const s = state()
  t.equal(s.outcome, 'rolled-back')
  t.equal(s.error?.code, 'HEALTH_FAILED')
  t.match(phase('complete')?.detail, /ABANDON sent/)
  subsetOfPolicy(t, actions)
  noLeaks(t, r)
})

t.test('3. an InService instance (no lifecycle action): success, nothing completed', async t => {
  await repo.commit('stage', { 'server.js': appFiles({ port, greeting: 'stage v2' })['server.js'] ?? '' })
  proxy.setActive([])
  const { r, lifecycle, actions } = await recordRun(RUN)
  exits(t, r, 0)
  t.equal((await getJson(url))['greeting'], 'stage v2')
  t.same(lifecycle, [], 'no CompleteLifecycleAction or heartbeat was sent')
  t.match(state().lifecycle, new RegExp(`asg ${asgName}, nothing to complete \\(InService\\)`))
  t.match(phase('complete'), { status: 'skipped', detail: /not-applicable/ })
  t.ok(actions.has('autoscaling:DescribeAutoScalingInstances'))
  t.notOk(actions.has('autoscaling:DescribeLifecycleHooks'), 'no hook lookup for an instance that waits on none')
  subsetOfPolicy(t, actions)
  noLeaks(t, r)
})

t.test('4. a missing required tag: exit 2, the message names the tag and how to set it', async t => {
  const releaseBefore = current()
  imds.set({ tags: { Environment: 'stage', Repository: repoUrl } })
  t.teardown(() => imds.set({ tags: TAGS }))
  // the instance waits on its launching hook: a bad configuration must not leave it in
  // Pending:Wait until the hook times out (invariant 6)
  proxy.setActive([{ instanceId, hookName }])
  t.teardown(() => proxy.setActive([]))
  const { r, actions, lifecycle } = await recordRun(RUN)
  exits(t, r, 2)
  t.match(r.stderr, /the service is not set/)
  t.match(r.stderr, /instance tag "Service"/, 'names the tag')
  t.match(r.stderr, /--service, or BOOTSTRAP_SERVICE/, 'and the other ways to provide it')
  t.equal(state().error?.code, 'CONFIG_INVALID')
  t.equal(current(), releaseBefore, 'nothing switched')
  t.equal((await getJson(url))['greeting'], 'stage v2', 'the live release keeps serving')
  t.match(completions(lifecycle), [{ instanceId, hookName, asgName, result: 'ABANDON', status: 200 }], 'the waiting lifecycle action is abandoned at once (invariant 6)')
  t.equal(completions(lifecycle).length, 1, 'exactly one completion')
  subsetOfPolicy(t, actions)
})

t.test('5. instance metadata tags off: tags come from ec2:DescribeTags', async t => {
  await ec2.send(new CreateTagsCommand({ Resources: [instanceId], Tags: Object.entries(TAGS).map(([Key, Value]) => ({ Key, Value })) }))
  imds.set({ tags: 'disabled' })
  t.teardown(() => imds.set({ tags: TAGS }))
  const { r, moto: recorded, actions } = await recordRun(RUN)
  exits(t, r, 0)
  t.ok(actions.has('ec2:DescribeTags'), 'the agent asked EC2 for the tags')
  t.match(recorded.find(a => a.action === 'DescribeTags')?.body, new RegExp(`Filter\\.1\\.Name=resource-id&Filter\\.1\\.Value\\.1=${instanceId}`))
  t.match(phase('identify')?.detail, /ec2:DescribeTags \(instance metadata tags are off\)/)
  t.equal(state().outcome, 'success')
  t.equal((await getJson(url))['apiKey'], fp(apiKey))
  subsetOfPolicy(t, actions)
  noLeaks(t, r)
})

t.test('6. the service secret does not exist: exit 2, SECRET_MISSING, nothing switched', async t => {
  const releaseBefore = current()
  const envBefore = readFileSync(envFile, 'utf8')
  await sm.send(new DeleteSecretCommand({ SecretId: apiSecretId, ForceDeleteWithoutRecovery: true }))
  t.teardown(async () => void (await createApiSecret()))
  proxy.setActive([{ instanceId, hookName }])
  t.teardown(() => proxy.setActive([]))
  const { r, actions, lifecycle } = await recordRun(RUN)
  exits(t, r, 2)
  t.match(r.stderr, /\[SECRET_MISSING\]/)
  t.match(r.stderr, /secret "stage\/app" does not exist/)
  t.equal(current(), releaseBefore)
  t.equal(readFileSync(envFile, 'utf8'), envBefore, 'the env file is untouched')
  t.equal((await getJson(url))['greeting'], 'stage v2')
  t.match(completions(lifecycle), [{ instanceId, hookName, asgName, result: 'ABANDON', status: 200 }], 'a waiting instance is abandoned')
  t.equal(completions(lifecycle).length, 1, 'exactly one completion')
  subsetOfPolicy(t, actions)
})

t.test('7. access denied', async t => {
  t.teardown(() => {
    proxy.failNext('BatchGetSecretValue', 400, 'AccessDeniedException', 0)
    proxy.failNext('GetSecretValue', 400, 'AccessDeniedException', 0)
  })

  t.test('on BatchGetSecretValue only: the agent falls back to GetSecretValue and succeeds', async t => {
    proxy.failNext('BatchGetSecretValue', 400, 'AccessDeniedException', 5, 'User is not authorized to perform: secretsmanager:BatchGetSecretValue')
    const { r, actions } = await recordRun(RUN)
    exits(t, r, 0)
    t.ok(actions.has('secretsmanager:GetSecretValue'), 'each secret was read with GetSecretValue')
    t.notOk(actions.has('secretsmanager:BatchGetSecretValue'), 'no batch call reached Secrets Manager')
    t.match(r.stdout, /BatchGetSecretValue is not available \(endpoint or policy\)/)
    t.equal((await getJson(url))['apiKey'], fp(apiKey))
    subsetOfPolicy(t, actions)
    noLeaks(t, r)
  })

  t.test('on every way to read a secret: non-zero exit naming the action and the policy', async t => {
    const releaseBefore = current()
    const envBefore = readFileSync(envFile, 'utf8')
    proxy.failNext('BatchGetSecretValue', 400, 'AccessDeniedException', 5, 'User is not authorized to perform: secretsmanager:BatchGetSecretValue')
    proxy.failNext('GetSecretValue', 400, 'AccessDeniedException', 5, 'User is not authorized to perform: secretsmanager:GetSecretValue')
    const { r, actions } = await recordRun(RUN)
    t.not(r.code, 0, 'non-zero exit', { stderr: r.stderr })
    t.equal(r.code, 1, 'AWS_ACCESS_DENIED maps to exit 1')
    t.match(r.stderr, /\[AWS_ACCESS_DENIED\]/)
    t.match(r.stderr, /secretsmanager:GetSecretValue/, 'names the service and action')
    t.match(r.stderr, /what to do: add secretsmanager:GetSecretValue on [^\n]* to the instance profile \(see iam\/agent-policy\.json\)/)
    t.equal(current(), releaseBefore, 'nothing switched')
    t.equal(readFileSync(envFile, 'utf8'), envBefore)
    t.equal((await getJson(url))['greeting'], 'stage v2')
    subsetOfPolicy(t, actions)
    noLeaks(t, r)
  })
})

t.test('8. throttled BatchGetSecretValue is retried and the run succeeds', async t => {
  t.teardown(() => proxy.failNext('BatchGetSecretValue', 400, 'ThrottlingException', 0))
  proxy.failNext('BatchGetSecretValue', 400, 'ThrottlingException', 2)
  const { r, actions } = await recordRun(RUN)
  exits(t, r, 0)
  t.match(r.stdout, /AWS BatchGetSecretValue failed \(ThrottlingException\); retrying/)
  t.ok(actions.has('secretsmanager:BatchGetSecretValue'), 'the retry reached Secrets Manager')
  t.equal(state().outcome, 'success')
  subsetOfPolicy(t, actions)
  noLeaks(t, r)
})

/** files under the root with size and mtime, to prove plan writes nothing there */
const snapshot = (d: string): string[] => {
  const out: string[] = []
  const walk = (p: string) => {
    for (const name of readdirSync(p)) {
      const f = join(p, name)
      const st = statSync(f, { throwIfNoEntry: false })
      if (!st) continue
      if (st.isDirectory() && !f.endsWith('/.pm2')) walk(f)
      else out.push(`${f} ${st.size} ${st.mtimeMs}`)
    }
  }
  walk(d)
  return out.sort()
}

const READ_ONLY = /^(Describe|List|Get)/
const FORBIDDEN_IN_PLAN = ['secretsmanager:GetSecretValue', 'secretsmanager:BatchGetSecretValue', 'ssm:GetParametersByPath', 'autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat']

interface PlanJson {
  commit: string | null
  commitNote?: string
  lifecycleHook: string
  instance: { id: string }
  secrets: { secretIds: string[]; secretsExist: Record<string, boolean> | null; parameterKeys: Record<string, string[]> | null; gitCredentialSecret: string | null }
}

t.test('10. plan reads names only', async t => {
  proxy.setActive([{ instanceId, hookName }])
  t.teardown(() => proxy.setActive([]))
  const before = snapshot(root)

  const check = async (t: Test, env: Record<string, string>, extra: string[]): Promise<PlanJson> => {
    const { r, actions } = await recordRun(['plan', '--root', root, '--json', ...extra], env)
    exits(t, r, 0)
    t.same([...actions].filter(a => !READ_ONLY.test(a.split(':')[1] ?? '')), [], 'only Describe*/List*/Get* actions')
    t.same(FORBIDDEN_IN_PLAN.filter(a => actions.has(a)), [], 'no secret value read, no lifecycle action touched')
    t.ok(actions.has('secretsmanager:DescribeSecret'))
    t.ok(actions.has('ssm:DescribeParameters'))
    t.ok(actions.has('autoscaling:DescribeLifecycleHooks'))
    subsetOfPolicy(t, actions)
    t.same(findLeaks(SECRETS, { root, allow: [envFile], texts: { stdout: r.stdout, stderr: r.stderr }, cmdlines: r.cmdlines }), [], 'no secret value in its output')
    const plan = JSON.parse(r.stdout) as PlanJson
    t.equal(plan.instance.id, instanceId)
    t.match(plan.lifecycleHook, new RegExp(`asg ${asgName}, hook ${hookName} \\(Pending:Wait\\)`), 'the hook state')
    t.same(plan.secrets.secretIds, [apiSecretId])
    t.same(plan.secrets.secretsExist, { [apiSecretId]: true })
    t.same(plan.secrets.parameterKeys, { [`/stage/${service}/`]: ['DB_PASSWORD'] }, 'key names, from DescribeParameters')
    return plan
  }

  t.test('a repository readable without a credential: the commit is shown', async t => {
    const env: Record<string, string> = { ...ENV }
    delete env['BOOTSTRAP_GIT_CREDENTIAL_SECRET']
    const plan = await check(t, env, ['--repository', repo.fileUrl])
    t.equal(plan.commit, await repo.head('stage'))
    t.equal(plan.secrets.gitCredentialSecret, null)
  })

  t.test('the private repository: plan reads no credential, so the commit is unknown', async t => {
    const plan = await check(t, ENV, [])
    t.equal(plan.commit, null)
    t.match(plan.commitNote, new RegExp(`needs the credential in ${gitSecretId}, and plan reads no secret`))
    t.equal(plan.secrets.gitCredentialSecret, gitSecretId)
  })

  t.same(snapshot(root), before, 'plan wrote nothing under the root')
})

t.test('9. the IAM policy lists exactly the actions the agent calls', async t => {
  t.same([...exercised].filter(a => !POLICY.has(a)).sort(), [], 'every action called (all cases) is in the policy')
  // s3:* is the release cache's: test/integration/release-cache.ts proves those statements exact
  t.same([...POLICY].filter(a => !exercised.has(a) && !a.startsWith('s3:')).sort(), [], 'every action in the policy was exercised by this file')
})
