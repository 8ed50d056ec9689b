/**
 * Files of the agent itself that other processes load by path: the env preload and the
 * run-with-env wrapper PM2 starts. They sit beside this module in the build output.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

export const agentFile = (name: 'env-preload.js' | 'run-with-env.js'): string => join(here, name)
