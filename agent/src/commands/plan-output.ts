/** Prints the plan: JSON with --json or off a TTY, a table otherwise. Progress goes to stderr. */
import { createLogger, type Logger } from '../core/logger.js'
import { createScrubber } from '../secrets/redact.js'
import type { Seams } from '../run/context.js'
import type { SettingsInput } from '../config/settings.js'
import type { Io } from './io.js'
import { formatPlan, makePlan } from './plan.js'

export const planCommandOutput = async (
  input: Omit<SettingsInput, 'tags'>,
  makeSeams: (log: Logger) => Seams,
  json: boolean,
  io: Io,
): Promise<number> => {
  const log = createLogger({ level: 'warn', stream: io.stderr, pretty: io.stderr.isTTY === true, scrubber: createScrubber() })
  const plan = await makePlan(input, makeSeams(log))
  io.stdout.write(json || io.stdout.isTTY !== true ? `${JSON.stringify(plan)}\n` : formatPlan(plan))
  return 0
}
