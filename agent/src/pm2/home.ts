/**
 * PM2_HOME as root reaches it. PM2_HOME (`<home>/.pm2`) and the home above it belong to the
 * service user, and PM2's daemon, run as that user, writes everything in it: the pid file, the
 * dump, the RPC socket. Root reads them as files of that user below `home`, never through a link
 * (core/untrusted-files.ts), so `.pm2` swapped for a link, or a FIFO in place of `pm2.pid`, gets
 * a refusal instead of root's attention.
 */
import { join, relative } from 'node:path'
import type { UntrustedFile } from '../core/untrusted-files.js'

export interface Pm2Home {
  /** the service user's home (core/paths.ts `home`): its entry is in root's state directory */
  home: string
  pm2Home: string
  /** the uid that owns them: the service user (the agent itself when it is not root) */
  owner: number
}

export const pm2File = (h: Pm2Home, name: string): UntrustedFile => ({ dir: h.home, rel: join(relative(h.home, h.pm2Home), name), owner: h.owner })
