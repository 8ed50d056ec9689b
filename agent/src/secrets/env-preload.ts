/**
 * Loaded into every service process by PM2 (`node --import <abs path>/env-preload.js app.js`):
 * reads the env file named by the non-secret `BOOTSTRAP_ENV_FILE` into `process.env` before the
 * app's first line runs. This is how secrets reach the service without PM2, argv or logs ever
 * holding them (invariant 1), byte-exact (invariant 4).
 *
 * Synchronous on purpose: one read before anything else is evaluated, so no code of the app ever
 * sees an environment without its secrets.
 */
import { readFileSync } from 'node:fs'
import { parseEnv } from './env-file.js'
import { messageOf } from '../core/errors.js'

/** sysexits.h EX_CONFIG: PM2 shows the service as errored instead of running it without secrets. */
const EX_CONFIG = 78

// fatal: a file that is not valid UTF-8 is corrupt; silently turning bytes into U+FFFD would
// start the service with wrong values
const utf8 = new TextDecoder('utf-8', { fatal: true })

const file = process.env.BOOTSTRAP_ENV_FILE
if (file !== undefined && file !== '') {
  try {
    const parsed = parseEnv(utf8.decode(readFileSync(file)), file)
    for (const [key, value] of Object.entries(parsed)) process.env[key] = value
  } catch (e: unknown) {
    // Everything that can be thrown here names only paths, keys, line numbers or errno codes
    // (parseEnv never quotes a value, fs errors quote the path, TextDecoder quotes nothing);
    // test/unit/env-preload.ts checks that no value reaches stderr.
    const reason = messageOf(e)
    process.stderr.write(`bootstrap-agent env-preload: cannot load env file ${file}: ${reason}\n`)
    process.exit(EX_CONFIG)
  }
}
