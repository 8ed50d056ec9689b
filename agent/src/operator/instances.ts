/**
 * What the operator commands share: the instances of one service and environment, found by their
 * tags (ec2:DescribeInstances, every page), and AWS errors whose remedies speak to the operator's
 * identity (iam/operator-policy.json) rather than to the instance profile.
 */
import type { Ec2InstancesApi } from '../aws/ssm-commands.js'
import { withRetry, type AwsCall, type RetryOptions } from '../aws/retry.js'
import { AgentError, isAgentError } from '../core/errors.js'

export interface InstanceQuery {
  service: string
  environment: string
  tagKeys: { service: string; environment: string }
}

export interface FoundInstance {
  instanceId: string
  /** EC2's instance state: pending, running, stopping, stopped, shutting-down */
  state: string
}

/** every state but terminated: an instance in a warm pool is stopped, one going away shutting-down */
export const PRESENT_STATES = ['pending', 'running', 'stopping', 'stopped', 'shutting-down']

/** The AWS errors' remedies speak to the instance profile; here the caller is an operator. */
export const forOperator = (e: unknown): unknown => {
  if (!isAgentError(e) || (e.code !== 'AWS_ACCESS_DENIED' && e.code !== 'AWS_NO_CREDENTIALS')) return e
  const remedy = e.code === 'AWS_ACCESS_DENIED'
    ? 'give your AWS identity the actions in iam/operator-policy.json'
    : 'configure AWS credentials (AWS_PROFILE, SSO or environment) for an identity with iam/operator-policy.json'
  return new AgentError(e.message, { code: e.code, remedy, exitCode: e.exitCode, retryable: e.retryable, cause: e.cause })
}

/** The instances tagged with the service and the environment, in `states`, sorted by id. */
export const findInstances = async (ec2: Ec2InstancesApi, q: InstanceQuery, states: readonly string[], retry?: RetryOptions): Promise<FoundInstance[]> => {
  const call: AwsCall = { service: 'ec2', action: 'DescribeInstances', resource: `${q.tagKeys.service}=${q.service}, ${q.tagKeys.environment}=${q.environment}` }
  const Filters = [
    { Name: `tag:${q.tagKeys.service}`, Values: [q.service] },
    { Name: `tag:${q.tagKeys.environment}`, Values: [q.environment] },
    { Name: 'instance-state-name', Values: [...states] },
  ]
  const found = new Map<string, string>()
  let NextToken: string | undefined
  try {
    do {
      const page = await withRetry(call, () => ec2.describeInstances({ Filters, MaxResults: 1000, NextToken }), retry)
      for (const r of page.Reservations ?? []) for (const i of r.Instances ?? []) if (i.InstanceId) found.set(i.InstanceId, i.State?.Name ?? 'unknown')
      NextToken = page.NextToken || undefined
    } while (NextToken)
  } catch (e) {
    throw forOperator(e)
  }
  return [...found].sort(([a], [b]) => a.localeCompare(b)).map(([instanceId, state]) => ({ instanceId, state }))
}
