/**
 * `bootstrap-agent history`: an operator's command. The runs of a service and environment from
 * the report log group (operator/history.ts), newest first, across instances alive or gone; with
 * --instance, one run's whole report with its evidence. A table on a TTY, JSON otherwise.
 * Exit 0 (also with no run in the window), 2 on bad input or a missing group, 1 on AWS errors.
 */
import { createLogsReaderApi } from '../aws/cloudwatch-logs.js'
import type { ParsedArgs } from '../config/cli-args.js'
import { quote } from '../config/names.js'
import { ConfigError, ExitCode } from '../core/errors.js'
import { historyOf, parseSince, pickReport, readReports, rowOf } from '../operator/history.js'
import type { Io } from './io.js'
import { flagText, operatorRegion, operatorReportGroup, parseOperatorTarget } from './operator-args.js'
import { formatHistory, formatReport } from './report-output.js'

const ACCEPTED = new Set(['service', 'environment', 'since', 'instance', 'run', 'json', 'report-log-group', 'tag-key-service', 'tag-key-environment'])
const DEFAULT_SINCE = '24h'
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/

export const historyCommand = async (args: ParsedArgs, env: NodeJS.ProcessEnv, io: Io, now = Date.now()): Promise<number> => {
  const target = parseOperatorTarget('history', args, env, ACCEPTED)
  const group = operatorReportGroup(args, env, target)
  const sinceText = flagText(args.flags, 'since') ?? DEFAULT_SINCE
  const startTime = parseSince(sinceText, now)
  if (startTime === undefined) throw new ConfigError(`--since ${quote(sinceText)} is not valid: expected minutes, hours or days before now (30m, 24h, 7d) or an ISO 8601 time (2026-01-31T12:00Z)`, 'fix --since')
  const instance = flagText(args.flags, 'instance')
  if (instance !== undefined && !INSTANCE_ID.test(instance)) throw new ConfigError(`--instance ${quote(instance)} is not an instance id: expected i- and 8 or 17 hex digits`, 'fix --instance')
  const runId = flagText(args.flags, 'run')
  if (runId !== undefined && instance === undefined) throw new ConfigError('--run needs --instance: a run is shown with its instance', 'add --instance i-…')
  const region = operatorRegion(env)
  const json = args.flags['json'] === true || io.stdout.isTTY !== true
  const read = await readReports(createLogsReaderApi(region), { group, region, startTime, ...(instance ? { instanceIds: [instance] } : {}) })
  const reports = historyOf(read.reports, target.service, target.environment)
  const since = new Date(startTime).toISOString()

  if (instance !== undefined) {
    const report = pickReport(reports, runId)
    if (!report) {
      throw new ConfigError(
        `no ${runId ? `run ${quote(runId)}` : 'report'} of ${instance} in ${group} since ${since}`,
        'check the instance id, widen --since (e.g. --since 7d), or run history without --instance to list the runs', 'REPORT_NOT_FOUND',
      )
    }
    io.stdout.write(json ? `${JSON.stringify(report)}\n` : formatReport(report))
    return ExitCode.ok
  }
  const rows = reports.map(rowOf)
  const instances = new Set(rows.map(r => r.instanceId)).size
  if (json) {
    for (const row of rows) io.stdout.write(`${JSON.stringify(row)}\n`)
    io.stdout.write(`${JSON.stringify({ summary: { service: target.service, environment: target.environment, group, since, runs: rows.length, instances, pages: read.pages, skipped: read.skipped } })}\n`)
  } else {
    const footer = `${rows.length} report(s) of ${target.service} (${target.environment}) from ${instances} instance(s) since ${since}, group ${group}; ` +
      '--instance <id> [--run <run>] shows one with its evidence'
    io.stdout.write(formatHistory(rows, footer))
  }
  return ExitCode.ok
}
