/**
 * Settings in two steps: tags + flags + environment give the service and environment, which
 * name the agent configuration parameter; its values (if it exists) join as one more layer and
 * the settings are resolved again. Shared by `run` (the resolve phase) and `plan`.
 */
import { parseAgentConfig } from './agent-config.js'
import type { InstanceIdentity } from './identity.js'
import type { Seams } from './run-context.js'
import { resolveSettings, type Settings, type SettingsInput } from './settings.js'

export const resolveWithAgentConfig = async (
  input: Omit<SettingsInput, 'tags'>,
  id: InstanceIdentity,
  seams: Seams,
): Promise<{ settings: Settings; configSource: string | undefined }> => {
  const first = resolveSettings({ ...input, tags: id.tags })
  if (!first.configParameter) return { settings: first, configSource: undefined }
  const text = await seams.secrets(first).getParameter(first.configParameter)
  if (text === undefined) return { settings: first, configSource: undefined }
  const source = `SSM parameter ${first.configParameter}`
  const values = parseAgentConfig(text, first.configParameter)
  return { settings: resolveSettings({ ...input, tags: id.tags, remoteConfig: { source, values } }), configSource: source }
}
