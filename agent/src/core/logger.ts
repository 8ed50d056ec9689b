/**
 * JSON-line logs through pino: to stdout (human-readable on a TTY) and to the log file. Key-based
 * redaction for fields that hold credentials, and the run's Scrubber applied to every string, so
 * a secret value that slips into a message is masked before it reaches any sink.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import pino from 'pino'
import pretty from 'pino-pretty'
import type { Scrubber } from '../secrets/redact.js'

export type Logger = pino.Logger

export interface LoggerOptions {
  level: string
  /** the agent's JSON log file; omitted for commands that change nothing (plan, status) */
  file?: string
  /** where progress goes: stdout for `run` (journald), stderr when stdout carries a result */
  stream: NodeJS.WriteStream
  pretty: boolean
  scrubber: Scrubber
  base?: Record<string, unknown>
}

export const REDACT_PATHS = [
  'token', '*.token', 'password', '*.password', 'secret', '*.secret', 'secrets', '*.secrets',
  'privateKey', '*.privateKey', 'sshPrivateKey', '*.sshPrivateKey', 'authorization', '*.authorization',
  'headers.authorization', 'env', '*.env',
]

export const createLogger = (opts: LoggerOptions): Logger => {
  const streams: pino.StreamEntry[] = [
    { level: 'trace', stream: opts.pretty ? pretty({ destination: opts.stream, colorize: opts.stream.isTTY === true, ignore: 'pid,hostname,runId,service', translateTime: 'HH:MM:ss' }) : opts.stream },
  ]
  if (opts.file) {
    mkdirSync(dirname(opts.file), { recursive: true, mode: 0o755 })
    streams.push({ level: 'trace', stream: pino.destination({ dest: opts.file, sync: true, mode: 0o640 }) })
  }
  const { scrubber } = opts
  return pino(
    {
      level: opts.level,
      base: { ...opts.base },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: label => ({ level: label }),
        log: obj => scrubber.scrubDeep(obj),
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map(a => (typeof a === 'string' ? scrubber.scrub(a) : a)) as Parameters<typeof method>)
        },
      },
    },
    pino.multistream(streams),
  )
}
