/**
 * JSON Schema of the app repository's manifest (`bootstrap-agent.json` at the repository root).
 * `schema/manifest.schema.json` is this object, written out for editors; a unit test keeps the
 * two identical.
 */
const REL_PATH = '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\x00]+$'
const ENV_KEY = '^[A-Za-z_][A-Za-z0-9_]*$'

/** What each pattern means, for error messages (the raw regex helps nobody). */
export const PATTERN_HELP: Readonly<Record<string, string>> = {
  [REL_PATH]: 'a relative path inside the repository (no leading "/", no ".." segment)',
  [ENV_KEY]: 'an environment variable name ([A-Za-z_][A-Za-z0-9_]*)',
  '^[a-z0-9][a-z0-9-]{0,62}$': 'a service name (lower-case letters, digits, "-")',
}

const relPath = { type: 'string', minLength: 1, maxLength: 256, pattern: REL_PATH } as const

const argv = {
  type: 'array',
  minItems: 1,
  maxItems: 64,
  items: { type: 'string', minLength: 1, maxLength: 4096 },
  description: 'program and arguments, run without a shell',
} as const

export const MANIFEST_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://github.com/ec2-bootstrap-agent/ec2-bootstrap-agent/schema/manifest.schema.json',
  title: 'ec2-bootstrap-agent manifest',
  type: 'object',
  additionalProperties: false,
  required: ['version', 'services'],
  properties: {
    $schema: { type: 'string' },
    version: { const: 1, description: 'manifest format version' },
    services: {
      type: 'object',
      minProperties: 1,
      maxProperties: 64,
      propertyNames: { pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          path: { ...relPath, description: 'directory of the service in the repository (monorepo); default "."' },
          start: {
            description: 'how PM2 starts the service; default: `npm start` when package.json has a start script, else node <main or index.js>',
            oneOf: [
              {
                type: 'object', additionalProperties: false, required: ['script'],
                properties: { script: { ...relPath, description: 'Node.js entry file, relative to the service path' } },
              },
              {
                type: 'object', additionalProperties: false, required: ['npm'],
                properties: { npm: { type: 'string', pattern: '^[A-Za-z0-9:._-]{1,64}$', description: 'package.json script to run' } },
              },
              {
                type: 'object', additionalProperties: false, required: ['command'],
                properties: { command: { ...argv, description: 'any program (not only Node.js) run by PM2, with the secrets in its environment' } },
              },
              {
                type: 'object', additionalProperties: false, required: ['static'],
                properties: {
                  static: {
                    type: 'object', additionalProperties: false, required: ['dir', 'port'],
                    properties: {
                      dir: { ...relPath, description: 'directory the build produced, relative to the service path' },
                      port: { type: 'integer', minimum: 1, maximum: 65535 },
                      spa: { type: 'boolean', description: 'answer unknown paths with index.html (single-page apps)' },
                    },
                  },
                },
              },
            ],
          },
          instances: {
            description: 'PM2 instances; more than 1 (or "max") runs in cluster mode (Node scripts only)',
            oneOf: [{ type: 'integer', minimum: 1, maximum: 256 }, { const: 'max' }],
          },
          nodeArgs: { type: 'array', maxItems: 32, items: { type: 'string', pattern: '^--?[A-Za-z0-9-]+(=[^\\x00]*)?$' } },
          build: { ...argv, description: 'build command run in the service path after npm ci, as the service user, without secrets' },
          env: {
            type: 'object', maxProperties: 128,
            propertyNames: { pattern: ENV_KEY },
            additionalProperties: { type: 'string', maxLength: 4096 },
            description: 'non-secret environment (stored by PM2 in plain text; never put secrets here)',
          },
          health: {
            oneOf: [
              {
                type: 'object', additionalProperties: false, required: ['url'],
                properties: {
                  url: { type: 'string', pattern: '^https?://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:[0-9]{1,5})?(/[^\\s]*)?$', description: 'HTTP URL on this host probed until it answers expectStatus' },
                  expectStatus: { type: 'integer', minimum: 100, maximum: 599 },
                  timeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
                },
              },
              {
                type: 'object', additionalProperties: false, required: ['stableSeconds'],
                properties: {
                  stableSeconds: { type: 'integer', minimum: 0, maximum: 600, description: 'PM2 online without restarts for this long' },
                  timeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
                },
              },
            ],
          },
          requiredEnv: {
            type: 'array', maxItems: 256, uniqueItems: true,
            items: { type: 'string', pattern: ENV_KEY },
            description: 'keys that must be present in the secrets; the run fails before anything is switched otherwise',
          },
          killTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, description: 'PM2 kill_timeout: time for graceful shutdown' },
          preStop: { ...argv, description: 'command run when the instance is about to go away (termination, spot interruption; `bootstrap-agent watch`), before PM2 stops the service: as the service user, with the service environment (secrets included), in the live release, within --pre-stop-timeout; a failure is logged and the drain goes on' },
        },
      },
    },
  },
} as const
