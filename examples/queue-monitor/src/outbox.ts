// The "HTTP outbox" mode: requests enqueued with `enqueueRequest` are sent by the plugin
// itself (from Rust, with an Idempotency-Key), not by this window's worker. The panel
// sets the server, enqueues requests (held for approval if asked), switches the app
// offline, sets auth headers and shows what the dispatcher reports: destination states
// (outboxStatus and the destination events), progress counters (outbox-progress events),
// the requests that went to the dead letters, with the HTTP status that sent them there,
// and the requests awaiting approval, with Release and Reject.
import {
  enqueueRequest, list, onAuthRequired, onDestinationOffline, onDestinationOnline,
  onOutboxProgress, onOutboxStalled, outboxStatus, reject, release, setHeaders, setOnline,
  type DestinationStatus, type HttpRequest, type Item, type OutboxOutcome, type OutboxStatus,
} from 'tauri-plugin-sync-queue-api'
import { log } from './log'
import { button, byId } from './view'

const OUTCOMES: OutboxOutcome[] = ['dispatched', 'succeeded', 'retried', 'dead']

/** Progress counted from `outbox-progress` events since the window opened. */
const progress: Record<OutboxOutcome, number> = { dispatched: 0, succeeded: 0, retried: 0, dead: 0 }
/** The HTTP status of each dead request, as its `dead` event said. */
const deadStatus = new Map<string, number | null>()

function value(id: string): string {
  return byId<HTMLInputElement>(id).value.trim()
}

function origin(url: string): string {
  return new URL(url).origin
}

function setText(id: string, text: string | number): void {
  const node = byId(id)
  if (node.textContent !== String(text)) node.textContent = String(text)
}

/** The requests the form describes: `count` of them, spread round-robin over the keys. */
function requestsFromForm(): HttpRequest[] {
  const url = value('outbox-url')
  origin(url) // throws a readable TypeError on a bad URL before anything is enqueued
  const keys = value('outbox-keys').split(',').map((k) => k.trim()).filter(Boolean)
  const count = Math.max(1, Number(value('outbox-count')) || 1)
  const maxRetries = Number(value('outbox-retries'))
  // An agent's action the user must approve first: not sent until released.
  const hold = byId<HTMLInputElement>('outbox-hold').checked
  return Array.from({ length: count }, (_, n): HttpRequest => {
    const key = keys[n % keys.length]
    if (key === undefined) return { url, maxRetries, hold, body: { n } }
    // The body says which key and which place in its key's order: what a server checks.
    return { url, maxRetries, hold, partitionKey: key, body: { n, key, seq: Math.floor(n / keys.length) } }
  })
}

async function enqueueFromForm(): Promise<void> {
  const ids: string[] = []
  // One at a time, in order: the order enqueued is each key's order.
  for (const request of requestsFromForm()) ids.push((await enqueueRequest(request)).id)
  const result = byId('outbox-result')
  result.textContent = `enqueued ${ids.length} request(s) to ${value('outbox-url')}`
  result.dataset.ids = ids.join(' ')
  log('action', result.textContent)
}

async function toggleAppOnline(): Promise<void> {
  const online = !(await outboxStatus()).online
  await setOnline(online)
  log('action', online ? 'app set online' : 'app set offline: nothing is sent')
}

async function headersFromForm(): Promise<void> {
  const destination = origin(value('outbox-url'))
  const token = value('outbox-token')
  await setHeaders(destination, token ? { authorization: token } : {})
  log('action', `headers set for ${destination}`)
}

type Act = (what: () => Promise<void>) => Promise<void>
/** How the held requests' buttons run their action (set by `wireOutboxControls`). */
let runAction: Act = async (what) => what()

/** Wire the panel's controls; `act` shows an action's error instead of losing it. */
export function wireOutboxControls(act: Act): void {
  runAction = act
  byId<HTMLFormElement>('outbox-form').addEventListener('submit', (e) => {
    e.preventDefault()
    void act(enqueueFromForm)
  })
  byId('outbox-online-toggle').addEventListener('click', () => void act(toggleAppOnline))
  byId('outbox-set-headers').addEventListener('click', () => void act(headersFromForm))
}

export async function listenToTheOutbox(): Promise<void> {
  await onDestinationOffline((e) => log('destination-offline', `${e.destination} offline: ${e.error}`))
  await onDestinationOnline((e) => log('destination-online', `${e.destination} online`))
  await onAuthRequired((e) => log('auth-required', `${e.destination} answered ${e.status} (${e.itemId}): set headers`))
  await onOutboxStalled((e) => log('outbox-stalled', `dispatcher stalled (${e.reason}); restarted`))
  await onOutboxProgress((e) => {
    progress[e.outcome] += 1
    if (e.outcome === 'dead') {
      deadStatus.set(e.id, e.status)
      log('dead', `${e.id} to ${e.destination} dead: ${e.status ?? ''} ${e.error ?? ''}`.trim())
    } else if (e.outcome === 'retried') {
      log('retry', `${e.id} to ${e.destination} will be retried: ${e.error ?? e.status}`)
    } else if (e.outcome === 'succeeded') {
      log('sent', `${e.id} sent to ${e.destination} (${e.status})`)
    }
  })
}

function row(cells: (string | number | null)[]): HTMLTableRowElement {
  const tr = document.createElement('tr')
  for (const c of cells) {
    const td = document.createElement('td')
    td.textContent = c === null ? '' : String(c)
    tr.append(td)
  }
  return tr
}

function renderDestinations(list: DestinationStatus[]): void {
  const tbody = byId('outbox-destinations')
  const key = JSON.stringify(list)
  if (tbody.dataset.key === key) return
  tbody.dataset.key = key
  tbody.replaceChildren(...list.map((d) => {
    const tr = row([d.destination, d.state, d.inFlight, d.dispatched, d.succeeded, d.retried, d.dead, d.lastError])
    tr.dataset.destination = d.destination
    tr.dataset.state = d.state
    tr.children[1]?.setAttribute('class', `state ${d.state}`)
    return tr
  }))
}

/** A dead request's status: from its `dead` event, else the first 3-digit code of its error. */
function statusOf(item: Item): string {
  const known = deadStatus.get(item.id)
  if (known !== undefined) return known === null ? '' : String(known)
  return /\b([1-5]\d\d)\b/.exec(item.lastError ?? '')?.[1] ?? ''
}

function renderDead(items: Item[]): void {
  const tbody = byId('outbox-dead')
  const dead = items.filter((i) => i.destination !== null)
  const key = JSON.stringify(dead.map((i) => [i.id, i.attempts, i.lastError, statusOf(i)]))
  if (tbody.dataset.key === key) return
  tbody.dataset.key = key
  tbody.replaceChildren(...dead.map((i) => {
    const tr = row([i.id, i.destination, statusOf(i), i.attempts, i.lastError])
    tr.dataset.id = i.id
    tr.dataset.status = statusOf(i)
    return tr
  }))
}

function renderHeld(items: Item[]): void {
  const tbody = byId('outbox-held')
  const key = JSON.stringify(items.map((i) => i.id))
  if (tbody.dataset.key === key) return
  tbody.dataset.key = key
  tbody.replaceChildren(...items.map((i) => {
    const body = (i.payload as { http?: { body?: unknown } }).http?.body
    const tr = row([i.id, i.destination, i.partitionKey, JSON.stringify(body ?? null)])
    tr.dataset.id = i.id
    const buttons = document.createElement('td')
    buttons.append(
      button('Release', 'release', () => void runAction(async () => {
        await release(i.id)
        log('action', `released ${i.id}`)
      })),
      button('Reject', 'reject', () => void runAction(async () => {
        await reject(i.id, 'rejected by the user')
        log('action', `rejected ${i.id}`)
      })),
    )
    tr.append(buttons)
    return tr
  }))
}

function renderOutbox(s: OutboxStatus): void {
  setText('outbox-app-online', s.online ? 'online' : 'offline')
  byId('outbox-app-online').className = `badge ${s.online ? 'good' : 'warn'}`
  setText('outbox-online-toggle', s.online ? 'Go offline' : 'Go online')
  setText('outbox-in-flight', `${s.inFlight} / ${s.concurrency}`)
  setText('outbox-stalled', s.stalled ? `stalled since ${new Date(s.stalled.since).toLocaleTimeString()}: ${s.stalled.reason}` : '')
  renderDestinations(s.destinations)
  for (const outcome of OUTCOMES) setText(`progress-${outcome}`, progress[outcome])
}

/** One refresh of the panel: the dispatcher's status, the outbox's dead letters and the
 * requests awaiting approval. */
export async function refreshOutbox(): Promise<void> {
  const [s, dead, held] = await Promise.all([
    outboxStatus(), list({ status: 'failed', limit: 100 }), list({ status: 'held', limit: 100 }),
  ])
  renderOutbox(s)
  renderDead(dead.items)
  renderHeld(held.items.filter((i) => i.destination !== null))
}
