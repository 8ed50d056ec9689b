/**
 * The LifecycleHook seam: heartbeats while long phases run, and exactly one completion per run.
 * Local mode (and any run with no Auto Scaling Group) uses `noLifecycleHook`; the AWS
 * implementation plugs in here.
 */
export type HookResult = 'CONTINUE' | 'ABANDON'
export type HookOutcome = 'completed' | 'no-active-action' | 'not-applicable'

export interface LifecycleHook {
  /** e.g. "asg web-prod, hook launching (Pending:Wait)", or "none (local mode)" */
  readonly description: string
  /** start heartbeating (idempotent) */
  begin(): Promise<void>
  /** stop heartbeating and complete the action; called once, from the runner's finally */
  complete(result: HookResult): Promise<HookOutcome>
  /** read-only discovery for a dry run (AWS: Describe* calls only, no heartbeat); the description */
  discover?(): Promise<string>
}

export const noLifecycleHook = (why: string): LifecycleHook => ({
  description: `none (${why})`,
  async begin() {},
  async complete() {
    return 'not-applicable'
  },
})
