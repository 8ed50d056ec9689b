/**
 * `bootstrap-agent fleet`: an operator's command. The instances of a service and environment now
 * (EC2, Auto Scaling) with each one's last run from the report log group and what it serves
 * (operator/fleet.ts): drift between instances at a glance. A table on a TTY, JSON otherwise.
 */
import { createLogsReaderApi } from '../aws/cloudwatch-logs.js'
import { createAutoScalingApi } from '../aws/lifecycle-hook.js'
import { createEc2InstancesApi } from '../aws/ssm-commands.js'
import type { ParsedArgs } from '../config/cli-args.js'
import { ExitCode } from '../core/errors.js'
import { fleetView } from '../operator/fleet.js'
import type { Io } from './io.js'
import { operatorRegion, operatorReportGroup, parseOperatorTarget } from './operator-args.js'
import { formatFleet } from './report-output.js'

const ACCEPTED = new Set(['service', 'environment', 'json', 'report-log-group', 'tag-key-service', 'tag-key-environment'])

export const fleetCommand = async (args: ParsedArgs, env: NodeJS.ProcessEnv, io: Io): Promise<number> => {
  const target = parseOperatorTarget('fleet', args, env, ACCEPTED)
  const group = operatorReportGroup(args, env, target)
  const region = operatorRegion(env)
  const view = await fleetView(
    { ec2: createEc2InstancesApi(region), autoscaling: createAutoScalingApi(region), logs: createLogsReaderApi(region) },
    { ...target, group, region },
  )
  if (args.flags['json'] === true || io.stdout.isTTY !== true) {
    for (const i of view.instances) io.stdout.write(`${JSON.stringify(i)}\n`)
    io.stdout.write(`${JSON.stringify({ summary: { service: target.service, environment: target.environment, group, instances: view.instances.length, serving: view.serving, drift: view.serving.length > 1 } })}\n`)
  } else {
    io.stdout.write(formatFleet(view, `${target.service} (${target.environment})`))
  }
  return ExitCode.ok
}
