/** `bootstrap-agent status`: the last run, whether a run is in progress or was interrupted, and
 * what `watch` sees and did (watch.json). */
import { readLockHolder } from '../run/lock.js'
import { lockFilePath, stateFilePath } from '../core/paths.js'
import { readState } from '../run/state.js'
import { readWatchState, watchLockFilePath, watchStateFilePath } from '../watch/state.js'
import { formatSummary } from './summary.js'
import { formatWatch } from './watch-summary.js'

export const statusCommand = async (root: string, json: boolean, out: NodeJS.WritableStream): Promise<number> => {
  const state = await readState(stateFilePath(root))
  const holder = await readLockHolder(lockFilePath(root))
  const watch = await readWatchState(watchStateFilePath(root))
  // the watch's lock names its pid while it lives (readLockHolder ignores a dead holder)
  const watchAlive = watch !== undefined && (await readLockHolder(watchLockFilePath(root)))?.pid === watch.pid
  // "running" in state.json but nobody holds the lock: the run was killed; the next run repairs it
  const interrupted = state?.outcome === 'running' && (!holder || holder.pid !== state.pid)
  if (json) {
    out.write(`${JSON.stringify({ state: state ?? null, runInProgress: holder ?? null, interrupted, watch: watch ? { ...watch, running: watchAlive } : null })}\n`)
    return 0
  }
  if (!state) out.write(`no run recorded yet under ${root} (state file ${stateFilePath(root)} is missing)\n`)
  else out.write(formatSummary(state))
  if (holder) out.write(`\n  run in progress: pid ${holder.pid} (${holder.command}, reason ${holder.reason}) since ${holder.startedAt}\n`)
  if (interrupted) out.write('\n  the last run was interrupted (killed); the next run repairs what it left\n')
  if (watch) out.write(`\n${formatWatch(watch, watchAlive)}`)
  return 0
}
