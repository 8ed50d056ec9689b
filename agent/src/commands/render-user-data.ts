/**
 * `bootstrap-agent render-user-data --template NAME --param key=value ... [--out FILE]
 * [--unit-file FILE] [--watch-unit-file FILE]`: reads user-data/templates/NAME.sh.tpl and the
 * systemd units it embeds,
 * renders them (operator/user-data.ts) and writes the script to FILE or stdout, with its size on stderr.
 */
import { existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ConfigError, errnoCode, ExitCode, messageOf } from '../core/errors.js'
import { quote } from '../config/names.js'
import { parseParamFlags, renderUserData, USER_DATA_MAX_BYTES } from '../operator/user-data.js'

export interface RenderIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

/** The directory holding user-data/templates: a checkout (from dist/ or agent/src/) or an
 * extracted release (from its dist/), whichever is above this module. */
const projectDir = (): string | undefined => {
  for (let d = dirname(fileURLToPath(import.meta.url)); ; d = dirname(d)) {
    if (existsSync(join(d, 'user-data/templates'))) return d
    if (dirname(d) === d) return undefined
  }
}

const readText = async (file: string, what: string, remedy: string): Promise<string> => {
  try {
    return await readFile(file, 'utf8')
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') throw new ConfigError(`${what} ${file} does not exist`, remedy, 'USER_DATA_INPUT_MISSING')
    throw e
  }
}

export const renderUserDataCommand = async (argv: readonly string[], agentVersion: string, io: RenderIo): Promise<number> => {
  let values
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        template: { type: 'string' },
        param: { type: 'string', multiple: true },
        out: { type: 'string' },
        'unit-file': { type: 'string' },
        'watch-unit-file': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (e) {
    throw new ConfigError(`render-user-data: ${messageOf(e)}`, 'run bootstrap-agent render-user-data --help', 'CLI_INVALID')
  }
  const dir = projectDir()
  const templatesDir = dir === undefined ? undefined : join(dir, 'user-data/templates')
  const available = templatesDir === undefined ? [] : (await readdir(templatesDir)).filter(f => f.endsWith('.sh.tpl')).map(f => f.slice(0, -'.sh.tpl'.length)).sort()
  const name = values.template
  if (name === undefined || !available.includes(name)) {
    const what = name === undefined ? 'no --template given' : `unknown --template ${quote(name)}`
    throw new ConfigError(`${what}: the templates are ${available.join(', ') || `(none found in ${templatesDir ?? 'user-data/templates'})`}`, 'run bootstrap-agent render-user-data --help', 'USER_DATA_PARAM_INVALID')
  }
  const templateText = await readText(join(templatesDir ?? '', `${name}.sh.tpl`), 'template', 'restore it from the repository')
  const unitFile = values['unit-file'] ?? join(dir ?? '', 'systemd/bootstrap-agent.service')
  const unit = await readText(unitFile, 'the systemd unit the user-data installs,', 'restore systemd/bootstrap-agent.service, or name a unit with --unit-file')
  const watchUnitFile = values['watch-unit-file'] ?? join(dir ?? '', 'systemd/bootstrap-agent-watch.service')
  const watchUnit = await readText(watchUnitFile, 'the watch systemd unit the user-data installs,', 'restore systemd/bootstrap-agent-watch.service, or name a unit with --watch-unit-file')

  const rendered = renderUserData({ templateName: name, templateText, params: parseParamFlags(values.param ?? []), unit, watchUnit, agentVersion })
  const size = `${rendered.bytes} bytes of user-data (EC2's limit: ${USER_DATA_MAX_BYTES})`
  if (values.out === undefined) {
    io.stdout.write(rendered.text)
    io.stderr.write(`render-user-data: ${size}\n`)
  } else {
    await writeFile(values.out, rendered.text, { mode: 0o644 })
    io.stderr.write(`render-user-data: wrote ${values.out}: ${size}\n`)
  }
  return ExitCode.ok
}
