// The example's own sync endpoint (src-tauri/src/endpoint.rs): where it is, its switch,
// and the upload the worker does for each item.
import { invoke } from '@tauri-apps/api/core'
import type { Item } from 'tauri-plugin-sync-queue-api'

export type EndpointMode = 'ok' | 'fail' | 'timeout' | 'down'

export interface EndpointInfo {
  url: string
  mode: EndpointMode
  /** Items the endpoint accepted since the app started. */
  received: number
}

/** How long an upload may take before the worker gives up and fails the item. */
export const SYNC_TIMEOUT_MS = 2_000

export function endpointInfo(): Promise<EndpointInfo> {
  return invoke<EndpointInfo>('endpoint')
}

export function setEndpointMode(mode: EndpointMode): Promise<EndpointInfo> {
  return invoke<EndpointInfo>('set_endpoint_mode', { mode })
}

/** POST the item to the endpoint; throws with a readable reason unless it answered 2xx. */
export async function upload(url: string, item: Item): Promise<void> {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(), SYNC_TIMEOUT_MS)
  let res: Response
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: item.id, payload: item.payload }),
      signal: abort.signal,
    })
  } catch (e) {
    if (abort.signal.aborted) throw new Error(`no answer within ${SYNC_TIMEOUT_MS} ms`)
    throw new Error(`endpoint unreachable (${String(e)})`)
  } finally {
    clearTimeout(timer)
  }
  if (!res.ok) throw new Error(`endpoint answered ${res.status}`)
}
