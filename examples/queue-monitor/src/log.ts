// The live event log: the plugin's events, the worker's results and the user's actions.
const MAX_LINES = 300

export type LogKind =
  | 'ready' | 'sidecar-exited' | 'items-available' | 'item-failed' | 'breaker-changed'
  | 'synced' | 'retry' | 'dead' | 'action' | 'error'
  // The HTTP outbox's (src/outbox.ts).
  | 'sent' | 'destination-offline' | 'destination-online' | 'auth-required' | 'outbox-stalled'

export function log(kind: LogKind, text: string): void {
  const list = document.getElementById('log') as HTMLOListElement
  const line = document.createElement('li')
  line.dataset.kind = kind
  const time = document.createElement('time')
  time.textContent = new Date().toLocaleTimeString()
  const tag = document.createElement('span')
  tag.className = `tag ${kind}`
  tag.textContent = kind
  line.append(time, tag, document.createTextNode(text))
  list.prepend(line)
  while (list.children.length > MAX_LINES) list.lastElementChild?.remove()
}
