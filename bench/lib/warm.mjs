// The warm-pool figure: how fast an instance that was prepared in a warm pool serves once it
// leaves the pool, against a cold first boot of the same service. Per repetition, alternating
// which goes first:
//   cold:   fresh root, IMDS target state InService, `run --reason boot` (clone, secrets, npm ci,
//           start, health): the first boot of an instance launched straight into the group.
//   warm:   fresh root, target Warmed:Stopped, `run --reason boot` (prepares, starts nothing:
//           checked, nothing answers on the port), then the PM2 daemon is killed (the instance
//           is stopped in the pool), target InService, `run --reason boot` again: the warmed
//           start, timed from spawn to exit, the service answering /health with the expected build.
// Auto Scaling: moto is seeded with a group whose member is the instance IMDS names, so hook
// discovery finds it at once (an instance IMDS says is a member but Auto Scaling does not list
// would make the agent wait up to 30 s for it, which would be all the figure measured). moto puts
// every member InService and has no CompleteLifecycleAction, so neither run completes a hook here:
// on AWS each adds one CompleteLifecycleAction call (tens of ms) to both sides alike.
import { randomBytes } from 'node:crypto'
import {
  AutoScalingClient, CreateAutoScalingGroupCommand, CreateLaunchConfigurationCommand, DescribeAutoScalingGroupsCommand, PutLifecycleHookCommand,
} from '@aws-sdk/client-auto-scaling'
import { DescribeImagesCommand, EC2Client } from '@aws-sdk/client-ec2'
import { health, median, REGION } from './harness.mjs'

/** A group with one member and a launching hook; the member's instance id. */
const seedGroup = async endpoint => {
  const aws = { region: REGION, endpoint, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } }
  const asg = new AutoScalingClient(aws)
  const ImageId = (await new EC2Client(aws).send(new DescribeImagesCommand({}))).Images?.[0]?.ImageId
  if (!ImageId) throw new Error('moto offered no AMI')
  const name = `bench-warm-${randomBytes(4).toString('hex')}`
  await asg.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: name, ImageId, InstanceType: 't3.micro' }))
  await asg.send(new CreateAutoScalingGroupCommand({ AutoScalingGroupName: name, LaunchConfigurationName: name, MinSize: 1, MaxSize: 1, DesiredCapacity: 1, AvailabilityZones: [`${REGION}a`] }))
  await asg.send(new PutLifecycleHookCommand({ AutoScalingGroupName: name, LifecycleHookName: 'launching', LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING', HeartbeatTimeout: 900, DefaultResult: 'ABANDON' }))
  const id = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }))).AutoScalingGroups?.[0]?.Instances?.[0]?.InstanceId
  if (!id) throw new Error(`moto created no member in ${name}`)
  return id
}

/**
 * o: { reps, moto, imds, app, runAgent(root, { svc, reason }), agentRoot(name), freshAgentRoot(root),
 *      killPm2(root, 'agent'), expectBuild(port, build, who), say(msg), ms(x) }
 */
export const measureWarm = async o => {
  const instanceId = await seedGroup(o.moto.endpoint)
  const cold = []
  const prepare = []
  const warmStart = []
  const coldRoot = o.agentRoot('warm-cold')
  const warmRoot = o.agentRoot('warm')
  const target = lifecycleState => o.imds.set({ instanceId, lifecycleState })
  try {
    for (let rep = 0; rep < o.reps; rep++) {
      const runCold = async () => {
        o.killPm2(coldRoot, 'agent')
        o.freshAgentRoot(coldRoot)
        target('InService')
        cold.push(await o.runAgent(coldRoot, { svc: o.app, reason: 'boot' }))
        await o.expectBuild(o.app.port, o.app.build, 'warm section, cold boot')
        o.killPm2(coldRoot, 'agent')
      }
      const runWarm = async () => {
        o.killPm2(warmRoot, 'agent')
        o.freshAgentRoot(warmRoot)
        target('Warmed:Stopped')
        const p = await o.runAgent(warmRoot, { svc: o.app, reason: 'boot' })
        if (!/start:skipped/.test(p.details)) throw new Error(`warm prepare started something: ${p.details}`)
        if (await health(o.app.port)) throw new Error(`warm prepare: something answers on port ${o.app.port}`)
        prepare.push(p)
        o.killPm2(warmRoot, 'agent') // the instance is stopped in the pool: no process survives
        target('InService')
        warmStart.push(await o.runAgent(warmRoot, { svc: o.app, reason: 'boot' }))
        await o.expectBuild(o.app.port, o.app.build, 'warm section, warmed start')
        o.killPm2(warmRoot, 'agent')
      }
      for (const f of rep % 2 ? [runWarm, runCold] : [runCold, runWarm]) await f()
      o.say(`warm rep ${rep + 1}/${o.reps}: cold boot ${o.ms(cold.at(-1).ms)}; warm prepare ${o.ms(prepare.at(-1).ms)}, warmed start ${o.ms(warmStart.at(-1).ms)}`)
    }
  } finally {
    o.imds.reset()
  }
  const phases = runs => Object.fromEntries(Object.keys(runs[0].phases).map(n => [n, median(runs.map(r => r.phases[n]))]))
  const coldMs = median(cold.map(r => r.ms))
  const warmStartMs = median(warmStart.map(r => r.ms))
  return {
    note: 'cold = first boot straight into the group; warmedStart = the InService run after a warm-pool prepare (PM2 daemon killed in between, as the stop in the pool does); no lifecycle action completed on either side (moto)',
    coldBootMs: coldMs,
    warmPrepareMs: median(prepare.map(r => r.ms)),
    warmedStartMs: warmStartMs,
    warmedStartVsColdBoot: warmStartMs / coldMs,
    coldPhasesMs: phases(cold),
    warmPreparePhasesMs: phases(prepare),
    warmedStartPhasesMs: phases(warmStart),
    warmedStartPhaseStatus: warmStart[0].details,
    samples: { coldMs: cold.map(r => Math.round(r.ms)), warmPrepareMs: prepare.map(r => Math.round(r.ms)), warmedStartMs: warmStart.map(r => Math.round(r.ms)) },
  }
}

/** The rows of the results table (metric, agent, baseline, ratio, target, met). */
export const warmRows = (w, { ms, x }) => [
  { metric: 'W warmed start (InService run after a warm prepare)', agent: ms(w.warmedStartMs), baseline: `cold boot ${ms(w.coldBootMs)}`, ratio: x(w.warmedStartVsColdBoot), target: '', met: '' },
  { metric: 'W warm prepare (Warmed:Stopped run, starts nothing)', agent: ms(w.warmPrepareMs), baseline: '', ratio: '', target: '', met: '' },
]
