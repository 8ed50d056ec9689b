/**
 * The phases of `run`, in order (design.md section 2). `complete` (the lifecycle hook) and
 * `rollback` are not in the list: the runner calls them on every exit path and on failure.
 */
import { build } from './phases/build.js'
import { cleanup } from './phases/cleanup.js'
import { fetch } from './phases/fetch.js'
import { identify } from './phases/identify.js'
import { install } from './phases/install.js'
import { publish } from './phases/publish.js'
import { resolve } from './phases/resolve.js'
import { secrets } from './phases/secrets.js'
import { start } from './phases/start.js'
import { switchPhase } from './phases/switch.js'
import { verify } from './phases/verify.js'
import type { Phase } from './runner.js'
import type { RunContext } from './context.js'

export const RUN_PHASES: readonly Phase<RunContext>[] = [identify, resolve, fetch, secrets, install, build, switchPhase, start, verify]

/** Publishing to the release cache and cleanup run only after a successful run and after the hook
 * was completed: neither may delay the instance going InService. Each runs whatever the other did:
 * a failure of either is a warning, never the run's outcome. */
export const AFTER_SUCCESS: readonly Phase<RunContext>[] = [publish, cleanup]

export const PHASE_NAMES = [...RUN_PHASES.map(p => p.name), 'complete', ...AFTER_SUCCESS.map(p => p.name)]
