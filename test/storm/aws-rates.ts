/**
 * The per-action request rates the boot storm enforces (test/helpers/throttle-proxy.ts), as close
 * to AWS's own as published. Each is a token bucket per account and region: `burst` requests at
 * once, refilled at `perSecond`. Sources (AWS documentation):
 *
 * - Parameter Store: "default throughput: 40 TPS, shared by GetParameter, GetParameters and
 *   GetParametersByPath" (Systems Manager endpoints and quotas; the knowledge-center article
 *   "ssm-parameter-store-rate-exceeded"). Burst is not published: one second's worth.
 * - Secrets Manager: BatchGetSecretValue 100 per second; GetSecretValue 10,000 per second
 *   (Secrets Manager quotas, and the March 2025 increase). Burst: one second's worth.
 * - EC2 (DescribeTags, the fallback when instance metadata tags are off): non-mutating actions
 *   have a bucket of 100 tokens refilled at 20 per second ("Request throttling for the Amazon EC2
 *   API", DescribeHosts example).
 * - Auto Scaling: one bucket shared by every Auto Scaling action of the account ("Amazon EC2 Auto
 *   Scaling throttles API requests based on a shared API bucket", API reference). Its size is not
 *   published: we assume EC2's non-mutating figures (100, refilled at 20 per second).
 */
import type { BucketSpec } from '../helpers/throttle-proxy.js'

export const AWS_RATES: readonly BucketSpec[] = [
  { actions: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath'], perSecond: 40, burst: 40 },
  { actions: ['secretsmanager:BatchGetSecretValue'], perSecond: 100, burst: 100 },
  { actions: ['secretsmanager:GetSecretValue'], perSecond: 10_000, burst: 10_000 },
  { actions: ['ec2:DescribeTags'], perSecond: 20, burst: 100 },
  {
    actions: ['autoscaling:DescribeAutoScalingInstances', 'autoscaling:DescribeLifecycleHooks', 'autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat'],
    perSecond: 20,
    burst: 100,
  },
]

/** One line per bucket, for reports: "ssm:GetParameter+… 40/s (burst 40)". */
export const describeRates = (rates: readonly BucketSpec[]): string[] =>
  rates.map(r => `${r.actions.join(' + ')}: ${r.perSecond}/s (burst ${r.burst})`)
