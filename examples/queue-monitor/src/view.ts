// Rendering: plain DOM updates from what the queue reports.
import type {
  Health, Item, Priority, SidecarStatus, Stats, Status,
} from 'tauri-plugin-sync-queue-api'

/** `stats` also reports these (docs/protocol.md, "Notifications and stats"). */
export interface Percentiles { p50: number; p95: number; p99: number }
export type FullStats = Stats & {
  totalRetries?: number
  waitMs?: Percentiles
  processingMs?: Percentiles
}

const STATUSES: Status[] = ['held', 'pending', 'processing', 'completed', 'failed', 'cancelled']
const PRIORITIES: Priority[] = ['critical', 'high', 'normal', 'low', 'background']

export const byId = <T extends HTMLElement = HTMLElement>(id: string) =>
  document.getElementById(id) as T

function setText(id: string, text: string | number): void {
  const node = byId(id)
  const value = String(text)
  if (node.textContent !== value) node.textContent = value
}

const ms = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(v < 10 ? 1 : 0))

export function renderStats(s: FullStats): void {
  for (const k of STATUSES) setText(`count-${k}`, s.byStatus[k] ?? 0)
  for (const k of PRIORITIES) setText(`prio-${k}`, s.byPriority[k] ?? 0)
  setText('total-enqueued', s.totalEnqueued)
  setText('total-completed', s.totalCompleted)
  setText('total-retries', s.totalRetries ?? 0)
  setText('total-failed', s.totalFailed)
  setText('success-rate', s.successRate === null ? '–' : `${(s.successRate * 100).toFixed(0)} %`)
  setText('rate-enqueue', s.throughput.enqueuePerSec.toFixed(1))
  setText('rate-dequeue', s.throughput.dequeuePerSec.toFixed(1))
  for (const p of ['p50', 'p95', 'p99'] as const) {
    setText(`wait-${p}`, ms(s.waitMs?.[p]))
    setText(`proc-${p}`, ms(s.processingMs?.[p]))
  }
}

export function renderHealth(h: Health): void {
  const breaker = byId('breaker')
  setText('breaker', h.breaker)
  breaker.className = `badge ${h.breaker === 'closed' ? 'good' : 'bad'}`
  byId('paused').hidden = !h.paused
  setText('pause-toggle', h.paused ? 'Resume queue' : 'Pause queue')
}

export function renderStatus(s: SidecarStatus): void {
  const state = byId('sidecar-state')
  setText('sidecar-state', s.state)
  state.className = `badge ${s.state === 'ready' ? 'good' : s.state === 'failed' ? 'bad' : 'warn'}`
  const r = s.ready
  const recovered = r
    ? Object.entries(r.recovered)
        .filter(([k, n]) => k !== 'quarantined' && typeof n === 'number' && n > 0)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ')
    : ''
  setText('sidecar-info', r ? `v${r.version} · ${r.durability}` : '')
  byId('sidecar-info').title = r?.dataDir ?? 'in memory'
  setText('recovered', r ? recovered || 'nothing' : '–')
}

const short = (v: unknown) => {
  const text = JSON.stringify(v)
  return text.length > 28 ? `${text.slice(0, 27)}…` : text
}

function cell(text: string | number): HTMLTableCellElement {
  const td = document.createElement('td')
  td.textContent = String(text)
  return td
}

/** Ids are time-ordered: their tail tells items apart; the whole id is in the tooltip. */
function idCell(id: string): HTMLTableCellElement {
  const td = cell(id.length > 10 ? `…${id.slice(-8)}` : id)
  td.title = id
  return td
}

export function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button')
  b.type = 'button'
  b.className = className
  b.textContent = label
  b.addEventListener('click', onClick)
  return b
}

/**
 * Replace a table's rows only when what they show changed, so that a row (and its
 * buttons) stays the same element between refreshes.
 */
function renderRows(tbody: HTMLElement, items: Item[], row: (item: Item) => HTMLTableRowElement, key: string): void {
  if (tbody.dataset.key === key) return
  tbody.dataset.key = key
  tbody.replaceChildren(...items.map(row))
}

export interface DeadLetterActions {
  requeue(id: string): void
  cancel(id: string): void
}

export function renderDeadLetters(items: Item[], actions: DeadLetterActions): void {
  const key = JSON.stringify(items.map((i) => [i.id, i.attempts, i.lastError]))
  renderRows(byId('dead-letters'), items, (item) => {
    const tr = document.createElement('tr')
    tr.dataset.id = item.id
    const buttons = document.createElement('td')
    buttons.append(
      button('Requeue', 'requeue', () => actions.requeue(item.id)),
      button('Cancel', 'cancel', () => actions.cancel(item.id)),
    )
    tr.append(idCell(item.id), cell(item.attempts), cell(item.lastError ?? ''), buttons)
    return tr
  }, key)
}

export function renderPending(items: Item[], now: number): void {
  const due = (item: Item) => (item.availableAt <= now ? 'now' : `in ${Math.ceil((item.availableAt - now) / 1000)} s`)
  const key = JSON.stringify(items.map((i) => [i.id, i.attempts, due(i)]))
  renderRows(byId('pending'), items, (item) => {
    const tr = document.createElement('tr')
    tr.dataset.id = item.id
    tr.append(
      idCell(item.id), cell(short(item.payload)), cell(item.priority),
      cell(item.partitionKey ?? ''), cell(due(item)),
    )
    return tr
  }, key)
}

export function showError(e: unknown): void {
  const box = byId('error')
  box.hidden = false
  box.textContent = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
}
