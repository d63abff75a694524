// The queue monitor: wires the plugin's API to the page. Everything the window shows comes
// from the plugin (commands and events) and from the example's own sync endpoint.
import { getCurrentWindow } from '@tauri-apps/api/window'
import {
  cancel, health, isSyncQueueError, list, onBreakerChanged, onItemFailed, onItemsAvailable,
  onReady, onSidecarExited, pause, push, pushBatch, requeue, resume, stats, status,
  type Priority, type PushItem,
} from 'tauri-plugin-sync-queue-api'
import { ThroughputChart } from './chart'
import { endpointInfo, setEndpointMode, upload, type EndpointMode } from './endpoint'
import { log } from './log'
import { listenToTheOutbox, refreshOutbox, wireOutboxControls } from './outbox'
import {
  byId, renderDeadLetters, renderHealth, renderPending, renderStats, renderStatus, showError,
  type FullStats,
} from './view'
import { runWorker } from './worker'

const REFRESH_MS = 500

function describe(e: unknown): string {
  if (isSyncQueueError(e)) return `${e.kind}: ${e.message}`
  return e instanceof Error ? e.message : String(e)
}

/** Run an action from the UI; show what went wrong instead of losing it. */
async function act(what: () => Promise<void>): Promise<void> {
  try {
    await what()
    byId('error').hidden = true
  } catch (e) {
    showError(describe(e))
    log('error', describe(e))
  }
}

async function listenToThePlugin(): Promise<void> {
  await onReady((r) => log('ready', `sidecar ${r.version} ready (${r.durability}), recovered ${JSON.stringify(r.recovered)}`))
  await onSidecarExited((x) =>
    log('sidecar-exited', `sidecar exited (code ${x.code}, signal ${x.signal}); ${x.restarting ? `restarting in ${x.restartInMs} ms` : 'not restarting'}`))
  await onItemsAvailable((a) => log('items-available', `${a.pending} ready to sync`))
  await onItemFailed((f) => log('item-failed', `${f.id} dead-lettered after ${f.attempts} attempts: ${f.error}`))
  await onBreakerChanged((b) => log('breaker-changed', `breaker ${b.state}${b.reason ? `: ${b.reason}` : ''}`))
}

function readPushForm(): PushItem {
  const raw = byId<HTMLInputElement>('push-payload').value
  let payload: PushItem['payload']
  try {
    payload = JSON.parse(raw) as PushItem['payload']
  } catch {
    payload = raw // plain text is a payload too
  }
  const item: PushItem = {
    payload,
    priority: byId<HTMLSelectElement>('push-priority').value as Priority,
    maxRetries: Number(byId<HTMLInputElement>('push-retries').value),
  }
  const key = byId<HTMLInputElement>('push-key').value.trim()
  if (key) item.partitionKey = key
  const delay = Number(byId<HTMLInputElement>('push-delay').value)
  if (delay > 0) item.delayMs = delay
  return item
}

async function pushFromForm(): Promise<void> {
  const item = readPushForm()
  const count = Math.max(1, Number(byId<HTMLInputElement>('push-count').value) || 1)
  const ids = count === 1 ? [(await push(item)).id] : (await pushBatch(Array.from({ length: count }, () => item))).ids
  const shown = ids.length > 2 ? `${ids[0]} … ${ids[ids.length - 1]}` : ids.join(', ')
  const result = byId('push-result')
  result.textContent = `pushed ${ids.length} (${item.priority}): ${shown}`
  result.dataset.ids = ids.join(' ')
  log('action', result.textContent)
}

function wireControls(): void {
  byId<HTMLFormElement>('push-form').addEventListener('submit', (e) => {
    e.preventDefault()
    void act(pushFromForm)
  })
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name=endpoint]')) {
    radio.addEventListener('change', () => void act(async () => {
      const info = await setEndpointMode(radio.value as EndpointMode)
      log('action', `endpoint switched to ${info.mode}`)
    }))
  }
  byId('pause-toggle').addEventListener('click', () => void act(async () => {
    const paused = (await health()).paused
    await (paused ? resume() : pause())
    log('action', paused ? 'queue resumed' : 'queue paused: pop hands out nothing')
  }))
  byId('quit').addEventListener('click', () => void act(() => getCurrentWindow().close()))
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name=mode]')) {
    radio.addEventListener('change', () => showMode(radio.value === 'outbox'))
  }
  wireOutboxControls(act)
}

/** The monitor's panels, or the HTTP outbox's panel in place of the webview worker's. */
function showMode(outbox: boolean): void {
  document.body.classList.toggle('outbox-mode', outbox)
  byId('outbox-panel').hidden = !outbox
  log('action', outbox ? 'HTTP outbox mode' : 'monitor mode')
}

const deadLetterActions = {
  requeue: (id: string) => void act(async () => {
    await requeue(id)
    log('action', `requeued ${id}`)
  }),
  cancel: (id: string) => void act(async () => {
    await cancel(id)
    log('action', `cancelled ${id}`)
  }),
}

async function refreshForever(chart: ThroughputChart): Promise<never> {
  let lastSample = 0
  for (;;) {
    try {
      // status() is answered by the plugin itself, at once, even while the sidecar restarts.
      renderStatus(await status())
      const [s, h, dead, pending, endpoint] = await Promise.all([
        stats() as Promise<FullStats>, health(), list({ status: 'failed', limit: 50 }),
        list({ status: 'pending', limit: 20 }), endpointInfo(),
      ])
      renderStats(s)
      renderHealth(h)
      renderDeadLetters(dead.items, deadLetterActions)
      renderPending(pending.items, Date.now())
      byId('endpoint-url').textContent = endpoint.url
      byId('endpoint-received').textContent = String(endpoint.received)
      byId<HTMLInputElement>(`endpoint-${endpoint.mode}`).checked = true
      const now = performance.now()
      if (now - lastSample >= 1000) {
        chart.sample({ pushed: s.totalEnqueued, completed: s.totalCompleted, failed: (s.totalRetries ?? 0) + s.totalFailed },
          lastSample ? (now - lastSample) / 1000 : 0)
        lastSample = now
      }
    } catch (e) {
      log('error', `refresh: ${describe(e)}`)
    }
    // A clock that shows the window is live. It also makes the page repaint every second,
    // which WebKitWebDriver's screenshot waits for (a still page never answers it).
    byId('refreshed').textContent = new Date().toLocaleTimeString()
    if (!byId('outbox-panel').hidden) {
      try {
        await refreshOutbox()
      } catch (e) {
        log('error', `outbox refresh: ${describe(e)}`)
      }
    }
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS))
  }
}

async function main(): Promise<void> {
  wireControls()
  // Listeners first, then status(): a `ready` emitted before the listeners existed is
  // still in status() (tauri-plugin/README.md, "Status").
  await listenToThePlugin()
  await listenToTheOutbox()
  const now = await status()
  renderStatus(now)
  if (now.state === 'ready' && now.ready) log('ready', `sidecar ${now.ready.version} ready (${now.ready.durability}) before the window listened`)
  const { url } = await endpointInfo()
  void runWorker((item) => upload(url, item), {
    state: (text) => { byId('worker-state').textContent = text },
    synced: (item, ms) => log('synced', `${item.id} synced in ${ms.toFixed(0)} ms`),
    failed: (item, error, retry) =>
      log(retry ? 'retry' : 'dead', `${item.id} attempt ${item.attempts} failed (${error}); ${retry ? 'will retry' : 'out of retries'}`),
    trouble: (e) => log('error', `worker: ${describe(e)}`),
  })
  void refreshForever(new ThroughputChart(byId('chart') as unknown as SVGSVGElement))
}

void main().catch((e) => showError(describe(e)))
