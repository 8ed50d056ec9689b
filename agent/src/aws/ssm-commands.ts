/**
 * The AWS surface of `bootstrap-agent rollout` (an operator's command, not the instance's): EC2
 * to find the instances by tag, SSM Run Command to send them the re-bootstrap document and read
 * each result. Two narrow interfaces of just the calls we make, so operator/rollout.ts is tested against
 * fakes; the SDK client modules are loaded on first use, so no other command pays for them.
 * Retries live in operator/rollout.ts (withRetry), not in the SDK (`sdkClientConfig`: maxAttempts 1).
 */
import type { DescribeInstancesRequest, DescribeInstancesResult } from '@aws-sdk/client-ec2'
import type { GetCommandInvocationRequest, GetCommandInvocationResult, SendCommandRequest, SendCommandResult } from '@aws-sdk/client-ssm'
import { lazy } from './lazy.js'
import { sdkClientConfig } from './retry.js'

/** The subset of the EC2 API we use. */
export interface Ec2InstancesApi {
  describeInstances(input: DescribeInstancesRequest): Promise<DescribeInstancesResult>
}

/** The subset of SSM Run Command we use. */
export interface SsmCommandsApi {
  sendCommand(input: SendCommandRequest): Promise<SendCommandResult>
  getCommandInvocation(input: GetCommandInvocationRequest): Promise<GetCommandInvocationResult>
}

export const createEc2InstancesApi = (region: string): Ec2InstancesApi => {
  const client = lazy(async () => {
    const { EC2Client, DescribeInstancesCommand } = await import('@aws-sdk/client-ec2')
    const ec2 = new EC2Client(sdkClientConfig(region))
    return { describeInstances: (input: DescribeInstancesRequest) => ec2.send(new DescribeInstancesCommand(input)) }
  })
  return {
    describeInstances: async input => (await client()).describeInstances(input),
  }
}

export const createSsmCommandsApi = (region: string): SsmCommandsApi => {
  const client = lazy(async () => {
    const { SSMClient, SendCommandCommand, GetCommandInvocationCommand } = await import('@aws-sdk/client-ssm')
    const ssm = new SSMClient(sdkClientConfig(region))
    return {
      sendCommand: (input: SendCommandRequest) => ssm.send(new SendCommandCommand(input)),
      getCommandInvocation: (input: GetCommandInvocationRequest) => ssm.send(new GetCommandInvocationCommand(input)),
    }
  })
  return {
    sendCommand: async input => (await client()).sendCommand(input),
    getCommandInvocation: async input => (await client()).getCommandInvocation(input),
  }
}
