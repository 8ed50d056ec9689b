/**
 * PM2 made ready for `start`: its systemd unit where that applies (pm2/startup.ts), then a running
 * daemon. A cold daemon spawn costs ~0.5 s; on a first boot `install` begins this in the
 * background while `npm ci` runs and `start` awaits the same promise, so the spawn leaves the
 * critical path. The order inside stays what it was (unit first, so a daemon is never forked
 * into the agent's own control group). A failure is not lost: it rejects the promise `start`
 * awaits, so `start` fails with it, as when the work was its own; and the run waits for it to
 * settle before it exits (commands/run.ts), so no half-spawned daemon is cut off.
 */
import { PM2_BIN } from './cli.js'
import { ensurePm2Startup } from './startup.js'
import { need, type RunContext } from '../run/context.js'

export const preparePm2 = (ctx: RunContext): Promise<string | undefined> => {
  ctx.pm2Ready ??= (async () => {
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const pm2 = (ctx.pm2 ??= ctx.seams.pm2(s, p, ctx.user))
    const resurrection = await ensurePm2Startup({
      exec: ctx.seams.exec, root: s.root, user: ctx.user,
      spec: { node: process.execPath, pm2Bin: PM2_BIN, home: p.home, pm2Home: p.pm2Home },
      killStrayDaemon: () => pm2.kill(),
    })
    await pm2.ensureDaemon()
    return resurrection
  })()
  return ctx.pm2Ready
}

/** Begins preparePm2 without waiting for it; its outcome is `start`'s to report. */
export const preparePm2InBackground = (ctx: RunContext): void => {
  preparePm2(ctx).catch(() => undefined)
}
