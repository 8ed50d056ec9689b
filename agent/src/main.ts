/**
 * main(argv, env): parse the command line, run one command, map any error to an exit code
 * (design.md section 6). The one top-level catch; only bin.ts calls process.exit.
 */
import { resolve } from 'node:path'
import { readAgentEnv } from './config/agent-env.js'
import { helpFor, parseCli } from './config/cli-args.js'
import type { Io } from './commands/io.js'
import { planCommandOutput } from './commands/plan-output.js'
import { renderUserDataCommand } from './commands/render-user-data.js'
import { fleetCommand } from './commands/fleet.js'
import { historyCommand } from './commands/history.js'
import { rolloutCommand } from './commands/rollout.js'
import { runCommand } from './commands/run.js'
import { statusCommand } from './commands/status.js'
import { watchCommand } from './commands/watch.js'
import { ExitCode, toAgentError } from './core/errors.js'
import { createAwsSeams } from './aws/seams.js'
import { parseTagFlags } from './seams/identity.js'
import { createLocalSeams } from './seams/local.js'
import type { Logger } from './core/logger.js'
import { MANIFEST_SCHEMA } from './config/manifest-schema.js'
import { agentEnvPath } from './core/paths.js'
import type { Seams } from './run/context.js'
import type { Mode, SettingsInput } from './config/settings.js'
import { VERSION } from './version.js'

const seamsFor = (mode: Mode, tags: Record<string, string>) => (log: Logger): Seams =>
  mode === 'local' ? createLocalSeams(tags, log) : createAwsSeams(tags, log)

export const main = async (argv: readonly string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> => {
  try {
    const args = parseCli(argv)
    if (args.command === 'version') {
      io.stdout.write(`${VERSION}\n`)
      return ExitCode.ok
    }
    if (args.command === 'help' || args.help) {
      io.stdout.write(`${helpFor(args.command)}\n`)
      return ExitCode.ok
    }
    if (args.command === 'render-user-data') return await renderUserDataCommand(args.rest ?? [], VERSION, io)
    // operators' commands: no agent root, agent.env or instance identity involved
    if (args.command === 'rollout') return await rolloutCommand(args, env, io)
    if (args.command === 'history') return await historyCommand(args, env, io)
    if (args.command === 'fleet') return await fleetCommand(args, env, io)
    if (args.command === 'manifest-schema') {
      io.stdout.write(`${JSON.stringify(MANIFEST_SCHEMA, null, 2)}\n`)
      return ExitCode.ok
    }
    const mode: Mode = args.flags['local'] === true || env['BOOTSTRAP_LOCAL'] === '1' ? 'local' : 'aws'
    const rootRaw = typeof args.flags['root'] === 'string' ? args.flags['root'] : env['BOOTSTRAP_ROOT'] || (mode === 'local' ? '.bootstrap-local' : '/')
    const root = resolve(rootRaw)
    const json = args.flags['json'] === true
    if (args.command === 'status') return await statusCommand(root, json, io.stdout)
    const input: Omit<SettingsInput, 'tags'> = {
      flags: { ...args.flags, root },
      env,
      agentEnv: await readAgentEnv(agentEnvPath(root)),
      mode,
    }
    const tags = parseTagFlags(args.tags)
    const makeSeams = seamsFor(mode, tags)
    if (args.command === 'watch') return await watchCommand({ input, out: io.stdout, pretty: io.stdout.isTTY === true && !json })
    if (args.command === 'plan' || args.flags['dry-run'] === true) {
      return await planCommandOutput(input, makeSeams, json, io)
    }
    return await runCommand({ input, root, makeSeams, out: io.stdout, err: io.stderr, pretty: io.stdout.isTTY === true && !json })
  } catch (e) {
    const err = toAgentError(e)
    io.stderr.write(`bootstrap-agent: error [${err.code}]: ${err.message}\n  what to do: ${err.remedy}\n`)
    return err.exitCode
  }
}
