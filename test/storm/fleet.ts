/**
 * A fleet booting at once, in one process: N simulated instances (test/storm/boot-instance.ts),
 * each with its own IMDSv2 server (own instance id, token and tags), its own agent seams and SDK
 * clients, running the agent's real phases through its real retry code (agent/src/aws/retry.ts)
 * against the throttle proxy (AWS's per-action rates and throttling errors), then the lifecycle
 * proxy (CompleteLifecycleAction), then moto.
 *
 * Why in-process: 200 agent processes on a 2-core machine would spend most of the storm loading
 * Node and the SDK (~0.5 s of CPU each), smearing "at once" over a minute; here the instances
 * share one event loop instead, and the report says how busy it was (event-loop delay, CPU).
 *
 * The fleet: services of `perService` instances, each service its own Auto Scaling group with a
 * launching hook, its own secret and parameter path; odd services read an agent configuration
 * parameter naming a shared secret too; the first one has 13 parameters (two pages of
 * GetParametersByPath); every `tagsOffEvery`-th instance has instance metadata tags off, so it
 * asks ec2:DescribeTags.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { CreateTagsCommand } from '@aws-sdk/client-ec2'
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager'
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import { startAwsWorld } from '../helpers/aws-world.js'
import { startThrottleProxy, type BucketSpec, type ThrottleProxy } from '../helpers/throttle-proxy.js'
import { bootInstance, type BootInput, type InstanceResult } from './boot-instance.js'

export interface FleetOptions {
  instances: number
  rates: readonly BucketSpec[]
  /** instances per service, i.e. per Auto Scaling group (50) */
  perService?: number
  /** every n-th instance has instance metadata tags off (4; 0: never) */
  tagsOffEvery?: number
  /** progress lines (setup steps) */
  progress?: (line: string) => void
}

export interface FleetRun {
  results: InstanceResult[]
  wallMs: number
  /** per `service:Action`, from the throttle proxy */
  counts: Record<string, { passed: number; throttled: number }>
  /** accepted CompleteLifecycleAction per instance id, with their results */
  completions: Map<string, string[]>
  eventLoopDelayMs: { p50: number; p99: number; max: number }
  /** CPU seconds of this process (agents, IMDS servers, proxies) during the storm */
  cpuSeconds: number
}

export interface Fleet {
  run(): Promise<FleetRun>
  stop(): Promise<void>
}

const SERVICE_NAMES = ['api', 'web', 'worker', 'auth', 'search', 'billing', 'mail', 'media']
const ENVIRONMENT = 'stage'
const HOOK = 'bootstrap-launch'
const distinct = (what: string) => `${what}-${randomBytes(12).toString('hex')}`

/** Starts moto, the lifecycle and throttle proxies and one IMDS server per instance; seeds moto. */
export const startFleet = async (o: FleetOptions): Promise<Fleet> => {
  const perService = o.perService ?? 50
  const tagsOffEvery = o.tagsOffEvery ?? 4
  const say = o.progress ?? (() => {})
  const stops: (() => unknown)[] = []
  const stop = async () => {
    // last started, first stopped; each once, however often stop() is called
    for (const s of stops.splice(0).reverse()) await s()
  }
  try {
    const root = mkdtempSync(join(tmpdir(), 'boot-storm-'))
    stops.push(() => rmSync(root, { recursive: true, force: true }))
    const world = await startAwsWorld({ teardown: s => void stops.push(s) })
    const lifecycle = world.proxy
    const throttle: ThrottleProxy = await startThrottleProxy(lifecycle.endpoint, o.rates)
    stops.push(() => throttle.stop())

    // the agents read these the way they would on an instance; each gets its own IMDS endpoint
    const saved = { ...process.env }
    stops.push(() => {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
      Object.assign(process.env, saved)
    })
    Object.assign(process.env, world.agentEnv(undefined, { AWS_ENDPOINT_URL: throttle.endpoint, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }))
    delete process.env['AWS_PROFILE']
    delete process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT']

    // seeding goes to moto directly: it is not the agents' traffic
    const { sm, ssm, ec2 } = world

    const shared = distinct('shared')
    await sm.send(new CreateSecretCommand({ Name: `${ENVIRONMENT}/shared`, SecretString: JSON.stringify({ SHARED_TOKEN: shared }) }))
    const instances: Omit<BootInput, 'secretValues'>[] = []
    const secretValues = [shared]
    const serviceCount = Math.ceil(o.instances / perService)
    for (let s = 0; s < serviceCount; s++) {
      const name = `${SERVICE_NAMES[s % SERVICE_NAMES.length]}${s >= SERVICE_NAMES.length ? `-${s}` : ''}`
      const size = Math.min(perService, o.instances - s * perService)
      say(`seeding ${name}: ${size} instances`)
      const env: Record<string, string> = { API_KEY: distinct('key') }
      await sm.send(new CreateSecretCommand({ Name: `${ENVIRONMENT}/${name}`, SecretString: JSON.stringify({ API_KEY: env['API_KEY'] }) }))
      const params: [string, string][] = [['db/password', distinct('db')]]
      if (s === 0) for (let i = 1; i <= 12; i++) params.push([`feature/f${String(i).padStart(2, '0')}`, distinct('f')])
      for (const [rel, value] of params) {
        await ssm.send(new PutParameterCommand({ Name: `/${ENVIRONMENT}/${name}/${rel}`, Value: value, Type: 'SecureString' }))
        env[rel.replace(/[/.-]/g, '_').toUpperCase()] = value
      }
      const repository = `https://git.example.invalid/fleet/${name}.git`
      const withConfig = s % 2 === 1
      if (withConfig) {
        await ssm.send(new PutParameterCommand({
          Name: `/bootstrap/${ENVIRONMENT}/${name}`,
          Type: 'String',
          // the repository too: these instances carry only the Service and Environment tags
          Value: JSON.stringify({ repository, 'secret-ids': '{environment}/shared,{environment}/{service}', 'keep-releases': '5' }),
        }))
        env['SHARED_TOKEN'] = shared
      }
      secretValues.push(...Object.values(env))

      // a long heartbeat timeout: the agents derive their completion deadline from it, and a
      // throttled fleet needs more than the integration tests' 60 s
      const { instanceIds } = await world.createGroup({ prefix: `asg-${name}`, size, hooks: [{ name: HOOK, heartbeatTimeout: 300 }] })
      const tags: Record<string, string> = { Service: name, Environment: ENVIRONMENT, ...(withConfig ? {} : { Repository: repository }) }
      for (const instanceId of instanceIds) {
        const tagsOff = tagsOffEvery > 0 && (instances.length + 1) % tagsOffEvery === 0
        if (tagsOff) await ec2.send(new CreateTagsCommand({ Resources: [instanceId], Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }))
        const imds = await world.startImds({ instanceId, tags: tagsOff ? 'disabled' : tags, lifecycleState: 'Pending:Wait' })
        instances.push({ instanceId, imdsEndpoint: imds.endpoint, service: name, expectedEnv: env, root, tagsOff })
      }
    }

    return {
      async run() {
        throttle.reset()
        // every instance waits on its launching action (Pending:Wait), as after a scale-out
        lifecycle.setActive(instances.map(i => ({ instanceId: i.instanceId, hookName: HOOK })))
        const completedBefore = lifecycle.completions().length
        const loop = monitorEventLoopDelay({ resolution: 10 })
        loop.enable()
        const cpu0 = process.cpuUsage()
        const t0 = performance.now()
        // at once: every instance starts in the same tick, as a fleet launched together would
        const results = await Promise.all(instances.map(i => bootInstance({ ...i, secretValues })))
        const wallMs = performance.now() - t0
        const cpu = process.cpuUsage(cpu0)
        loop.disable()
        const completions = new Map<string, string[]>()
        for (const c of lifecycle.completions().slice(completedBefore)) {
          const id = c.instanceId ?? '?'
          completions.set(id, [...(completions.get(id) ?? []), c.result ?? '?'])
        }
        return {
          results,
          wallMs,
          counts: throttle.counts(),
          completions,
          eventLoopDelayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
        }
      },
      stop,
    }
  } catch (e) {
    await stop()
    throw e
  }
}
