/**
 * TypeScript bindings for `tauri-plugin-sync-queue`: a durable,
 * priority-ordered, at-least-once work queue run by a sidecar next to your
 * Tauri 2 app.
 *
 * Every function calls one plugin command (`plugin:sync-queue|<command>`).
 * Every failure rejects with a {@link SyncQueueError}, whose `kind` tells
 * `CapacityExceeded` from `ItemNotFound` from a crashed sidecar.
 *
 * @example A worker loop
 * ```ts
 * import { pop, complete, fail } from 'tauri-plugin-sync-queue-api'
 *
 * for (;;) {
 *   const item = await pop({ timeoutMs: 25_000 })   // long poll
 *   if (!item) continue
 *   try {
 *     await upload(item.payload)
 *     await complete(item)
 *   } catch (e) {
 *     await fail(item, { error: String(e) })
 *   }
 * }
 * ```
 *
 * One module on purpose, as Tauri's official plugins have it: the package's
 * whole surface is this file, and most of its length is the documented types
 * of the wire's objects (each function is a line or two).
 *
 * @module
 */

import { invoke, type InvokeArgs } from '@tauri-apps/api/core'
import { listen, type UnlistenFn } from '@tauri-apps/api/event'

export type { UnlistenFn }

// ---------------------------------------------------------------- models

/** Any JSON value: what an item's payload may be. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** Pop order is by priority, then first in, first out. */
export type Priority = 'critical' | 'high' | 'normal' | 'low' | 'background'

/**
 * `failed` means retries are exhausted (the dead-letter set); `held` means pushed with
 * `hold: true` and not handed out until {@link release}.
 */
export type Status = 'pending' | 'processing' | 'completed' | 'failed' | 'cancelled' | 'held'

/** The statuses `purge` accepts. */
export type FinishedStatus = 'completed' | 'failed' | 'cancelled'

/** An item as the queue reports it. Times are ms since the Unix epoch. */
export interface Item<P = JsonValue> {
  id: string
  payload: P
  priority: Priority
  status: Status
  /** Times the item was handed out by `pop`. */
  attempts: number
  maxRetries: number
  correlationId: string | null
  metadata: Record<string, string>
  partitionKey: string | null
  createdAt: number
  updatedAt: number
  /** Earliest time `pop` may hand the item out. */
  availableAt: number
  /** While `processing`: when the item returns to `pending` unless completed, failed or extended. */
  leaseExpiresAt: number | null
  /** While `processing`: identifies this hand-out. Pass it back to `complete`/`fail`. */
  leaseId: string | null
  expiresAt: number | null
  lastError: string | null
  /** The origin an outbox dispatcher sends it to; `null`: the app's own item. */
  destination: string | null
  /** The unique-work key it was pushed with. */
  uniqueKey: string | null
}

/**
 * Unique work: with a live (held, pending or processing) item under `key`, `keep` adds
 * nothing (the result names the live item), `replace` cancels a held or pending one
 * (`lastError: "replaced"`; a processing one cannot be recalled, so the new item is
 * appended), `append` queues the new item behind every earlier live one.
 */
export interface Unique {
  key: string
  policy: 'keep' | 'replace' | 'append'
}

/** What `push` takes: the payload, and optionally the other writable fields. */
export interface PushItem<P = JsonValue> {
  /** Required; `null` is a valid payload. */
  payload: P
  /** 1–128 characters; generated (time-ordered) when left out. */
  id?: string
  /** Default `normal`. */
  priority?: Priority
  /** Default 3: the item is handed out at most `maxRetries + 1` times. */
  maxRetries?: number
  correlationId?: string
  metadata?: Record<string, string>
  /** Items sharing a key are handed out one at a time, in push order. */
  partitionKey?: string
  /** Not handed out before this many ms from now. */
  delayMs?: number
  /** Cancelled (`lastError: "expired"`) if still pending (or held) after this many ms. */
  ttlMs?: number
  /**
   * The origin it is sent to (at most 255 characters). Only pops with `destinations`
   * (an outbox dispatcher) hand it out; a plain `pop` never sees it.
   */
  destination?: string | null
  /** Stored `held`: never handed out until {@link release}; {@link reject} cancels it. */
  hold?: boolean
  unique?: Unique
}

export interface PushResult {
  /** With `unique: 'kept'`, the live item's id (nothing was added). */
  id: string
  /** Present when the push had `unique`. */
  unique?: 'added' | 'kept' | 'replaced' | 'appended'
  /** With `unique: 'replaced'`: the id of the item cancelled. */
  replaced?: string
}

export interface PushBatchResult {
  ids: string[]
  /** Ids that were already in the queue (or repeated in the batch). */
  duplicates: string[]
  /** One entry per member pushed with `unique`, in order; absent if none was. */
  unique?: PushResult[]
}

export interface PopOptions {
  /** Wait up to this long for an item (long poll). Default: answer at once. */
  timeoutMs?: number
  /** How long the item stays leased to you. Default: the queue's `lease_timeout`. */
  leaseMs?: number
  /** Pop from this partition only. */
  partition?: number
  /**
   * Present: hand out only items that have a destination not in `except` (an outbox
   * dispatcher passes its offline origins). Absent: only items without a destination.
   */
  destinations?: { except: string[] }
}

export interface PopBatchOptions extends PopOptions {
  /** At most this many items. Default: the queue's `batch_size`. */
  max?: number
}

export interface LeaseOptions {
  /** The `leaseId` from `pop`: makes sure a late consumer cannot touch someone else's attempt. */
  leaseId?: string
}

export interface FailOptions extends LeaseOptions {
  /** What went wrong; kept as the item's `lastError`. */
  error?: string
  /** To the dead letters (`failed`) at once, whatever retries are left. */
  dead?: boolean
  /** The next attempt not before now + this many ms (instead of the backoff). */
  retryAfterMs?: number
  /**
   * Default `true`. `false`: the attempt does not count (`attempts` goes back down, no
   * retry is counted, the breaker does not see it); the item is pending again.
   */
  charge?: boolean
}

export interface FailResult {
  /** `false`: out of retries, the item is now `failed`. */
  retry: boolean
  /** When the retry becomes available. */
  availableAt?: number
}

export interface ExtendLeaseResult {
  leaseExpiresAt: number
}

export interface ListOptions {
  status?: Status
  priority?: Priority
  /** Default 100, at most 1000. */
  limit?: number
  /** The `next` cursor of the previous page. */
  after?: JsonValue
}

export interface ListPage<P = JsonValue> {
  items: Item<P>[]
  /** Cursor for the next page; `null` on the last one. */
  next: JsonValue
}

export interface PurgeResult {
  removed: number
}

export type BreakerState = 'closed' | 'open' | 'halfOpen'

export interface Health {
  /** `false` while the breaker is not closed or storage has failed. */
  healthy: boolean
  breaker: BreakerState
  paused: boolean
  reason?: string
}

export interface Stats {
  totalEnqueued: number
  totalCompleted: number
  totalFailed: number
  currentSize: number
  /** `null` until something has finished. */
  successRate: number | null
  avgWaitMs: number
  avgProcessingMs: number
  byStatus: Partial<Record<Status, number>>
  byPriority: Partial<Record<Priority, number>>
  throughput: { enqueuePerSec: number; dequeuePerSec: number }
  /** `bytesOnDisk`, `journalBytes`, `lastSnapshotAt` (empty in memory mode). */
  storage: Record<string, JsonValue>
  /** Per destination (origin): its retained items by status and its last error. */
  destinations: Record<string, DestinationStats>
  /** The sidecar may report more. */
  [extra: string]: unknown
}

/** `stats.destinations[origin]`. */
export interface DestinationStats {
  pending: number
  processing: number
  held: number
  failed: number
  completed: number
  cancelled: number
  lastError: string | null
  /** When that error was reported (ms since the epoch). */
  lastErrorAt: number | null
}

/**
 * How durable an acknowledged change is (the queue config's `durability`), or
 * `'memory'` for a queue kept in memory only.
 */
export type Durability = 'always' | 'periodic' | 'snapshot' | 'memory'

/** Payload of `sync-queue://ready`: the sidecar (re)started and recovered. */
export interface Ready {
  version: string
  protocol: number
  /** `null` in memory mode. */
  dataDir: string | null
  /** The data directory's durability mode, or `'memory'` in memory mode. */
  durability: Durability
  /**
   * Items recovered, by status; and `quarantined`, present only when recovery moved a
   * damaged journal block to a quarantine file (its records are not in the queue).
   */
  recovered: Partial<Record<Status, number>> & { quarantined?: Quarantined[] }
  [extra: string]: unknown
}

/** A damaged journal block the sidecar set aside on open (`ready.recovered.quarantined`). */
export interface Quarantined {
  /** The journal segment it came from. */
  file: string
  /** Where in that segment (the segment now ends there). */
  offset: number
  bytes: number
  /** The quarantine file holding the bytes, in the data directory. */
  quarantine: string
  /** Why the block could not be read. */
  reason: string
}

/** Payload of `sync-queue://items-available`: ready items went from none to some. */
export interface ItemsAvailable {
  pending: number
}

/** Payload of `sync-queue://item-failed`: an item ran out of retries. */
export interface ItemFailed {
  id: string
  attempts: number
  error: string | null
}

/** Payload of `sync-queue://breaker-changed`. */
export interface BreakerChanged {
  state: BreakerState
  reason: string | null
}

/** Payload of `sync-queue://sidecar-exited`: the sidecar process ended. */
export interface SidecarExited {
  code: number | null
  signal: number | null
  /** The last lines the sidecar wrote to stderr. */
  stderrTail: string
  /**
   * Whether the plugin starts it again: false after a requested stop, and after
   * an exit status a restart cannot fix (2 to 5; calls then fail with `Config`,
   * `Locked`, `DataUnreadable` or `DataDirUnusable`).
   */
  restarting: boolean
  restartInMs: number | null
}

/**
 * Where the sidecar is in its life: `starting` (the first start; calls wait),
 * `ready` (it answers calls), `restarting` (it exited and is started again after
 * a delay; calls wait), `failed` (it exited with a status a restart cannot fix;
 * calls fail with `failure`), `stopped` (by `shutdown` or the app exiting).
 */
export type SidecarState = 'starting' | 'ready' | 'restarting' | 'failed' | 'stopped'

/** What `status` returns: what a listener registered from the start would know. */
export interface SidecarStatus {
  state: SidecarState
  /** The last `sync-queue://ready` payload (the running sidecar's when `ready`); `null` before the first. */
  ready: Ready | null
  /** The last `sync-queue://sidecar-exited` payload, if any. */
  lastExit: SidecarExited | null
  /** When `failed`: the error every call rejects with. */
  failure: SyncQueueErrorData | null
}

// ---------------------------------------------------------------- errors

/**
 * What went wrong. From the queue (with a JSON-RPC `code`): `CapacityExceeded`,
 * `ItemNotFound`, `ShuttingDown`, `Locked`, `DuplicateItem`, `PersistenceError`,
 * `EncryptionError`, `CompressionError`, `InvalidState`, `InvalidParams`,
 * `ParseError`, `InvalidRequest` (and its kinds `MessageTooLarge`,
 * `NestingTooDeep`, `BatchTooLarge`, code -32600), `MethodNotFound`,
 * `InternalError`, `RpcError` (any other code). From the plugin
 * (`code: null`): `SidecarExited` (the sidecar died; it is restarted),
 * `ShuttingDown` (it was stopped: `shutdown` or app exit), `Timeout`, `ReadyTimeout`, `Spawn`, `Config`, `Protocol`, `Io`,
 * `Json`; and `Ipc` when Tauri refused the call itself (a missing permission, a
 * bad argument). A sidecar that exits with a status a restart cannot fix is not
 * restarted, and every call fails with `Config` (exit status 2: its command
 * line, config or key was refused), `Locked` (3: another process owns the data
 * directory), `DataUnreadable` (4: corrupt data, or a wrong or missing key) or
 * `DataDirUnusable` (5), with `data` = a `SidecarExited` payload, until the
 * app restarts.
 */
export type ErrorKind =
  | 'CapacityExceeded'
  | 'ItemNotFound'
  | 'ShuttingDown'
  | 'Locked'
  | 'DuplicateItem'
  | 'PersistenceError'
  | 'EncryptionError'
  | 'CompressionError'
  | 'InvalidState'
  | 'ParseError'
  | 'InvalidRequest'
  | 'MessageTooLarge'
  | 'NestingTooDeep'
  | 'BatchTooLarge'
  | 'MethodNotFound'
  | 'InvalidParams'
  | 'InternalError'
  | 'RpcError'
  | 'SidecarExited'
  | 'DataUnreadable'
  | 'DataDirUnusable'
  | 'Timeout'
  | 'ReadyTimeout'
  | 'Spawn'
  | 'Config'
  | 'Protocol'
  | 'Io'
  | 'Json'
  | 'Ipc'
  // Kinds a newer sidecar may add, without losing completion of the known ones.
  | (string & {})

/** The error object the plugin rejects with, as it crosses the IPC boundary. */
export interface SyncQueueErrorData {
  kind: ErrorKind
  /** The JSON-RPC error code for errors from the queue; `null` for the plugin's own. */
  code: number | null
  message: string
  /** Details: the queue's `data`, or e.g. a `SidecarExited` payload for `SidecarExited`. */
  data: unknown
}

/** Every function of this package rejects with one of these. */
export class SyncQueueError extends Error implements SyncQueueErrorData {
  readonly kind: ErrorKind
  readonly code: number | null
  readonly data: unknown

  constructor(error: SyncQueueErrorData) {
    super(error.message)
    this.name = 'SyncQueueError'
    this.kind = error.kind
    this.code = error.code
    this.data = error.data
  }
}

function isErrorData(value: unknown): value is SyncQueueErrorData {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return typeof v.kind === 'string' && typeof v.message === 'string'
}

/**
 * Whether `error` is a sync-queue error, optionally of the given kind.
 *
 * @example
 * ```ts
 * try {
 *   await push({ payload })
 * } catch (e) {
 *   if (isSyncQueueError(e, 'CapacityExceeded')) showQueueFull()
 *   else throw e
 * }
 * ```
 */
export function isSyncQueueError(error: unknown, kind?: ErrorKind): error is SyncQueueError {
  return error instanceof SyncQueueError && (kind === undefined || error.kind === kind)
}

function toSyncQueueError(raw: unknown): SyncQueueError {
  if (raw instanceof SyncQueueError) return raw
  if (isErrorData(raw)) {
    return new SyncQueueError({ kind: raw.kind, code: raw.code ?? null, message: raw.message, data: raw.data ?? null })
  }
  // Tauri itself refused the call (e.g. not allowed by the capability), with a string.
  const message = typeof raw === 'string' ? raw : raw instanceof Error ? raw.message : String(raw)
  return new SyncQueueError({ kind: 'Ipc', code: null, message, data: null })
}

async function call<T>(command: string, args?: InvokeArgs): Promise<T> {
  try {
    return await invoke<T>(`plugin:sync-queue|${command}`, args)
  } catch (raw) {
    throw toSyncQueueError(raw)
  }
}

/** An item id, or an item from `pop` (whose `leaseId` is then used too). */
export type ItemRef = string | Pick<Item<unknown>, 'id' | 'leaseId'>

function lease(ref: ItemRef, options?: LeaseOptions): { id: string; leaseId?: string } {
  if (typeof ref === 'string') return { id: ref, leaseId: options?.leaseId }
  return { id: ref.id, leaseId: options?.leaseId ?? ref.leaseId ?? undefined }
}

// -------------------------------------------------------------- commands

/** Checks the sidecar answers. Resolves `true`. */
export async function ping(): Promise<boolean> {
  return await call<boolean>('ping')
}

/**
 * Adds an item to the queue. Rejects with `CapacityExceeded` when the queue
 * is full and `DuplicateItem` when an item with that id is still live.
 *
 * @example
 * ```ts
 * const { id } = await push({ payload: { note: 42 }, priority: 'high' })
 * ```
 */
export async function push<P = JsonValue>(item: PushItem<P>): Promise<PushResult> {
  return await call<PushResult>('push', { item })
}

/** Adds several items, all or nothing. */
export async function pushBatch<P = JsonValue>(items: PushItem<P>[]): Promise<PushBatchResult> {
  return await call<PushBatchResult>('push_batch', { items })
}

/**
 * Hands out the next item, now `processing` under a fresh lease, or `null`
 * when there is none. With `timeoutMs` it waits that long for one.
 */
export async function pop<P = JsonValue>(options?: PopOptions): Promise<Item<P> | null> {
  return await call<Item<P> | null>('pop', { options })
}

/** Hands out up to `max` items (possibly none). */
export async function popBatch<P = JsonValue>(options?: PopBatchOptions): Promise<Item<P>[]> {
  return await call<Item<P>[]>('pop_batch', { options })
}

/**
 * Marks a processing item done. Given the item from `pop`, its `leaseId` is
 * checked, so a consumer whose lease expired cannot complete another's attempt.
 */
export async function complete(item: ItemRef, options?: LeaseOptions): Promise<void> {
  await call<null>('complete', lease(item, options))
}

/** What {@link completeBatch} did. */
export interface CompleteBatchResult {
  /** The ids completed, in order. */
  completed: string[]
  /** Each member refused, with the error `complete` would have given (`data.kind` names it). */
  errors: { index: number; id: string; error: { code: number; message: string; data: Record<string, unknown> } }[]
}

/**
 * Marks several processing items done in one call (one commit). Items from `pop` pass
 * their `leaseId` too. Each on its own: one that cannot be completed is listed in
 * `errors` and does not stop the others.
 */
export async function completeBatch(items: ItemRef[]): Promise<CompleteBatchResult> {
  return await call<CompleteBatchResult>('complete_batch', { items: items.map((item) => lease(item)) })
}

/**
 * Reports a failed attempt. The item is retried later (`retry: true`) or,
 * out of retries, becomes `failed` and `sync-queue://item-failed` fires.
 */
export async function fail(item: ItemRef, options?: FailOptions): Promise<FailResult> {
  return await call<FailResult>('fail', {
    ...lease(item, options),
    error: options?.error,
    dead: options?.dead,
    retryAfterMs: options?.retryAfterMs,
    charge: options?.charge,
  })
}

/** Cancels a held, pending or processing item. */
export async function cancel(id: string): Promise<void> {
  await call<null>('cancel', { id })
}

/**
 * Approves a `held` item (pushed with `hold: true`): it becomes `pending` and keeps its
 * place in line. Rejects with `InvalidState` if the item is not held.
 */
export async function release(id: string): Promise<void> {
  await call<null>('release', { id })
}

/**
 * Turns down a `held` item: it becomes `cancelled`, with `reason` (default `"rejected"`)
 * as its `lastError`. Rejects with `InvalidState` if the item is not held.
 */
export async function reject(id: string, reason?: string): Promise<void> {
  await call<null>('reject', { id, reason })
}

/** Puts a failed or cancelled item back in line, with its attempts reset. */
export async function requeue(id: string): Promise<void> {
  await call<null>('requeue', { id })
}

/** Keeps a processing item leased for `leaseMs` more from now. */
export async function extendLease(item: ItemRef, leaseMs: number, options?: LeaseOptions): Promise<ExtendLeaseResult> {
  return await call<ExtendLeaseResult>('extend_lease', { ...lease(item, options), leaseMs })
}

/** One item by id. Rejects with `ItemNotFound`. */
export async function get<P = JsonValue>(id: string): Promise<Item<P>> {
  return await call<Item<P>>('get', { id })
}

/** A page of items in push order; pass `next` as `after` for the next page. */
export async function list<P = JsonValue>(options?: ListOptions): Promise<ListPage<P>> {
  return await call<ListPage<P>>('list', { options })
}

/**
 * Removes every item with this finished status. Destructive: needs the
 * `sync-queue:allow-purge` permission, which `sync-queue:default` lacks.
 */
export async function purge(status: FinishedStatus): Promise<PurgeResult> {
  return await call<PurgeResult>('purge', { status })
}

/** Queue metrics. */
export async function stats(): Promise<Stats> {
  return await call<Stats>('stats')
}

/** Whether the queue is healthy, the breaker state, whether it is paused. */
export async function health(): Promise<Health> {
  return await call<Health>('health')
}

/** While paused, `pop` hands out nothing. The paused state survives restarts. */
export async function pause(): Promise<void> {
  await call<null>('pause')
}

export async function resume(): Promise<void> {
  await call<null>('resume')
}

/** Resolves once everything so far is durable and compacted. */
export async function flush(): Promise<void> {
  await call<null>('flush')
}

/**
 * Stops the sidecar for the rest of the app's run: it finishes, persists and
 * exits, and later calls reject with `ShuttingDown`. Needs the
 * `sync-queue:allow-shutdown` permission, which `sync-queue:default` lacks.
 */
export async function shutdown(): Promise<void> {
  await call<null>('shutdown')
}

/**
 * Where the sidecar is, with the last `ready` and `sidecar-exited` payloads:
 * for a frontend that starts listening after the sidecar was ready (a late
 * `onReady` never fires for a start that already happened). Answered by the
 * plugin, without a call to the sidecar. Listen first, then ask, so that
 * nothing falls between the two.
 *
 * @example
 * ```ts
 * const unlisten = await onReady(showReady)
 * const now = await status()
 * if (now.state === 'ready' && now.ready) showReady(now.ready)
 * ```
 */
export async function status(): Promise<SidecarStatus> {
  return await call<SidecarStatus>('status')
}

// ---------------------------------------------------------------- outbox

/**
 * An HTTP request for the outbox to send. The plugin's dispatcher sends it
 * (from Rust: it keeps going while the window reloads or is hidden) with an
 * `Idempotency-Key: <item id>` header, the same on every attempt.
 *
 * A 2xx answer completes the item. Network errors, timeouts, 5xx, 408 and 429
 * are retried (a `Retry-After` is honoured); any other 4xx sends the item to
 * the dead letters at once, with the status and the start of the body.
 */
export interface HttpRequest {
  /** Default `POST`. */
  method?: string
  /** An absolute `http:` or `https:` URL; its origin is the item's destination. */
  url: string
  /**
   * Stored with the item, on disk: put tokens in {@link setHeaders} instead,
   * which are added when the request is sent and never stored.
   */
  headers?: Record<string, string>
  /** A string is sent as it is; any other JSON value as `application/json`. */
  body?: JsonValue
  /** Binary body, base64-encoded (instead of `body`). */
  bodyBase64?: string
  /** Per-attempt timeout. Default: the plugin's `outbox.timeoutMs` (30 s). */
  timeoutMs?: number
  /** Statuses to retry, whatever the default classification (and the app's Rust hook) says. */
  retryStatuses?: number[]
  /** Statuses that send the item to the dead letters at once, likewise. */
  deadStatuses?: number[]
  /** 1–128 characters; generated when left out. It is the `Idempotency-Key`. */
  id?: string
  /** Default `normal`. */
  priority?: Priority
  /** Requests sharing a key are sent one at a time, in the order enqueued. */
  partitionKey?: string
  /** Default 3: at most `maxRetries + 1` charged attempts (offline time is not charged). */
  maxRetries?: number
  /** Cancelled (`lastError: "expired"`) if still not sent after this many ms. */
  ttlMs?: number
  /** Not sent before this many ms from now. */
  delayMs?: number
  correlationId?: string
  metadata?: Record<string, string>
  /** Not sent until `release(id)` (e.g. an agent's action awaiting the user); `reject(id)` cancels it. */
  hold?: boolean
  /** See {@link Unique}. */
  unique?: Unique
}

/** What `enqueueRequest` resolves to: the item's id, and what `unique` did. */
export type EnqueueResult = PushResult

/**
 * A destination (a URL's origin) as the dispatcher sees it: `online` (sending),
 * `offline` (network-class failures: probed with backoff, its requests wait
 * uncharged), `authRequired` (a 401: held until {@link setHeaders}),
 * `appOffline` (the app said {@link setOnline}`(false)`).
 */
export type DestinationState = 'online' | 'offline' | 'authRequired' | 'appOffline'

export interface DestinationStatus {
  /** The origin, e.g. `"https://api.example.com"`. */
  destination: string
  state: DestinationState
  /** While `offline`: when the next probe goes out. */
  nextProbeAt: number | null
  lastError: string | null
  inFlight: number
  /** Counters since the app started. */
  dispatched: number
  succeeded: number
  retried: number
  dead: number
}

/** What `outboxStatus` returns. */
export interface OutboxStatus {
  /** Whether the dispatcher runs (`outbox.enabled`). */
  running: boolean
  /** `false` after `setOnline(false)` without a destination. */
  online: boolean
  /** At most this many requests in flight. */
  concurrency: number
  inFlight: number
  destinations: DestinationStatus[]
  /** Set while the watchdog sees no progress although requests are due. */
  stalled: { reason: string; since: number } | null
}

/**
 * Adds an HTTP request to the outbox; the plugin sends it.
 *
 * @example
 * ```ts
 * const { id } = await enqueueRequest({
 *   url: 'https://api.example.com/notes',
 *   body: { text: 'hello' },
 *   partitionKey: 'note-42',
 * })
 * ```
 */
export async function enqueueRequest(request: HttpRequest): Promise<EnqueueResult> {
  return await call<EnqueueResult>('enqueue_request', { request })
}

/**
 * Tells the outbox whether the app is online: for one destination (an origin
 * or a URL), or, without one, for all. While offline nothing is sent there and
 * no attempt is charged.
 */
export async function setOnline(online: boolean, destination?: string): Promise<void> {
  await call<null>('set_online', { online, destination })
}

/**
 * Headers added to every request to `destination` (an origin or a URL,
 * normalised to its origin) from now on, e.g. a fresh token after
 * `onAuthRequired`. Kept in memory only; releases an auth hold.
 */
export async function setHeaders(destination: string, headers: Record<string, string>): Promise<void> {
  await call<null>('set_headers', { destination, headers })
}

/** The dispatcher's state, per destination. Answered by the plugin. */
export async function outboxStatus(): Promise<OutboxStatus> {
  return await call<OutboxStatus>('outbox_status')
}

// ---------------------------------------------------------------- events

/** The event names the plugin emits. */
export const EVENTS = {
  itemsAvailable: 'sync-queue://items-available',
  itemFailed: 'sync-queue://item-failed',
  breakerChanged: 'sync-queue://breaker-changed',
  ready: 'sync-queue://ready',
  sidecarExited: 'sync-queue://sidecar-exited',
  destinationOffline: 'sync-queue://destination-offline',
  destinationOnline: 'sync-queue://destination-online',
  authRequired: 'sync-queue://auth-required',
  outboxStalled: 'sync-queue://outbox-stalled',
  outboxProgress: 'sync-queue://outbox-progress',
} as const

async function on<T>(event: string, callback: (payload: T) => void): Promise<UnlistenFn> {
  return await listen<T>(event, (e) => callback(e.payload))
}

/**
 * Calls `callback` when ready items went from none to some (a push, a delay
 * or backoff ran out, a lease expired); at most every 100 ms. Resolves to a
 * function that stops listening.
 *
 * @example
 * ```ts
 * const unlisten = await onItemsAvailable(({ pending }) => wakeWorkers(pending))
 * // later
 * unlisten()
 * ```
 */
export async function onItemsAvailable(callback: (event: ItemsAvailable) => void): Promise<UnlistenFn> {
  return await on(EVENTS.itemsAvailable, callback)
}

/** Calls `callback` when an item ran out of retries and is now `failed`. */
export async function onItemFailed(callback: (event: ItemFailed) => void): Promise<UnlistenFn> {
  return await on(EVENTS.itemFailed, callback)
}

/** Calls `callback` when the circuit breaker opens, half-opens or closes. */
export async function onBreakerChanged(callback: (event: BreakerChanged) => void): Promise<UnlistenFn> {
  return await on(EVENTS.breakerChanged, callback)
}

/** Calls `callback` each time the sidecar (re)starts and has recovered its data. */
export async function onReady(callback: (event: Ready) => void): Promise<UnlistenFn> {
  return await on(EVENTS.ready, callback)
}

/** Calls `callback` when the sidecar process ends (a crash, or a stop). */
export async function onSidecarExited(callback: (event: SidecarExited) => void): Promise<UnlistenFn> {
  return await on(EVENTS.sidecarExited, callback)
}

/** Payload of `sync-queue://destination-offline`. */
export interface DestinationOffline {
  destination: string
  /** The network-class failure that took it offline. */
  error: string
  nextProbeAt: number | null
}

/** Payload of `sync-queue://destination-online`. */
export interface DestinationOnline {
  destination: string
}

/** Payload of `sync-queue://auth-required`: a 401; the destination is held. */
export interface AuthRequired {
  destination: string
  status: number
  /** The request that got the 401 (it is retried, uncharged, after `setHeaders`). */
  itemId: string
}

/** Payload of `sync-queue://outbox-stalled`: no progress although requests were due. */
export interface OutboxStalled {
  reason: string
  since: number
  /** The dispatcher restarted itself. */
  restarted: boolean
}

/** What happened to a request: sent, answered 2xx, to be retried, or dead-lettered. */
export type OutboxOutcome = 'dispatched' | 'succeeded' | 'retried' | 'dead'

/** Payload of `sync-queue://outbox-progress`: one step of one request. */
export interface OutboxProgress {
  id: string
  destination: string
  outcome: OutboxOutcome
  /** The HTTP status, when there was an answer. */
  status: number | null
  error: string | null
  attempts: number
}

/** Calls `callback` when a destination stops answering (it is then probed with backoff). */
export async function onDestinationOffline(callback: (event: DestinationOffline) => void): Promise<UnlistenFn> {
  return await on(EVENTS.destinationOffline, callback)
}

/** Calls `callback` when a destination answers again (or the app set it online). */
export async function onDestinationOnline(callback: (event: DestinationOnline) => void): Promise<UnlistenFn> {
  return await on(EVENTS.destinationOnline, callback)
}

/**
 * Calls `callback` when a destination answered 401: its requests wait until
 * {@link setHeaders} gives it new headers.
 *
 * @example
 * ```ts
 * await onAuthRequired(async ({ destination }) => {
 *   await setHeaders(destination, { authorization: `Bearer ${await refreshToken()}` })
 * })
 * ```
 */
export async function onAuthRequired(callback: (event: AuthRequired) => void): Promise<UnlistenFn> {
  return await on(EVENTS.authRequired, callback)
}

/** Calls `callback` when the watchdog found the dispatcher stalled (and restarted it). */
export async function onOutboxStalled(callback: (event: OutboxStalled) => void): Promise<UnlistenFn> {
  return await on(EVENTS.outboxStalled, callback)
}

/** Calls `callback` for each request sent, succeeded, retried or dead-lettered. */
export async function onOutboxProgress(callback: (event: OutboxProgress) => void): Promise<UnlistenFn> {
  return await on(EVENTS.outboxProgress, callback)
}
