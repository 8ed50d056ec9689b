/**
 * Settings in two steps: tags + flags + environment give the service and environment, which
 * name the agent configuration parameter; its values (if it exists) join as one more layer and
 * the settings are resolved again. Shared by `run` (the resolve phase) and `plan`.
 */
import { parseAgentConfig } from './agent-config.js'
import type { InstanceIdentity } from '../seams/identity.js'
import type { Seams } from '../run/context.js'
import { resolveConfigLocation, resolveSettings, type Settings, type SettingsInput } from './settings.js'

export const resolveWithAgentConfig = async (
  input: Omit<SettingsInput, 'tags'>,
  id: InstanceIdentity,
  seams: Seams,
): Promise<{ settings: Settings; configSource: string | undefined }> => {
  const base: SettingsInput = { ...input, tags: id.tags }
  // only the service and environment are needed to find the parameter: the repository, the
  // branch map and the rest may come from the parameter itself
  const location = resolveConfigLocation(base)
  const text = location.configParameter === undefined ? undefined : await seams.secrets(location).getParameter(location.configParameter)
  if (location.configParameter === undefined || text === undefined) return { settings: resolveSettings(base), configSource: undefined }
  const source = `SSM parameter ${location.configParameter}`
  const values = parseAgentConfig(text, location.configParameter)
  return { settings: resolveSettings({ ...base, remoteConfig: { source, values } }), configSource: source }
}
