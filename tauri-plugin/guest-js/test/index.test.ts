import { afterEach, describe, expect, test, vi } from 'vitest'
import { clearMocks, mockIPC } from '@tauri-apps/api/mocks'
import { emit } from '@tauri-apps/api/event'
import type { InvokeArgs } from '@tauri-apps/api/core'

import * as api from '../index'
import commandNames from '../../command_names.rs?raw'
import {
  EVENTS,
  SyncQueueError,
  isSyncQueueError,
  type HttpRequest,
  type Item,
  type OutboxStatus,
  type SyncQueueErrorData,
} from '../index'

type Call = { cmd: string; args: InvokeArgs | undefined }

/** Answers every command with `result` and records what was invoked. */
function answer(result: unknown): Call[] {
  const calls: Call[] = []
  mockIPC((cmd, args) => {
    calls.push({ cmd, args })
    return result
  })
  return calls
}

/** Rejects every command with `error`, as the Rust side does. */
function reject(error: unknown): void {
  mockIPC(() => {
    throw error
  })
}

/** Drops keys whose value is undefined: what JSON.stringify sends over IPC. */
function wire(args: InvokeArgs | undefined): unknown {
  return args === undefined ? undefined : JSON.parse(JSON.stringify(args))
}

const item: Item = {
  id: 'a',
  payload: { n: 1 },
  priority: 'normal',
  status: 'processing',
  attempts: 1,
  maxRetries: 3,
  correlationId: null,
  metadata: {},
  partitionKey: null,
  createdAt: 1,
  updatedAt: 2,
  availableAt: 1,
  leaseExpiresAt: 30_001,
  leaseId: 'L1',
  expiresAt: null,
  lastError: null,
  destination: null,
  uniqueKey: null,
}

/** An HTTP request with every option set: passed to the plugin exactly as given. */
const everyRequestOption: HttpRequest = {
  method: 'PUT',
  url: 'https://api.example.com/notes/7',
  headers: { 'x-client': 'monitor' },
  body: 'plain text',
  timeoutMs: 5_000,
  retryStatuses: [409],
  deadStatuses: [503],
  id: 'note-7',
  priority: 'high',
  partitionKey: 'note-7',
  maxRetries: 5,
  ttlMs: 60_000,
  delayMs: 10,
  correlationId: 'c1',
  metadata: { by: 'test' },
  hold: true,
  unique: { key: 'note-7', policy: 'replace' },
}

const outbox: OutboxStatus = {
  running: true,
  online: true,
  concurrency: 8,
  inFlight: 1,
  destinations: [
    {
      destination: 'http://127.0.0.1:8080',
      state: 'offline',
      nextProbeAt: 1_000,
      lastError: 'connection refused',
      inFlight: 1,
      dispatched: 4,
      succeeded: 2,
      retried: 1,
      dead: 1,
    },
  ],
  stalled: { reason: 'no progress for 60000 ms', since: 5 },
}

afterEach(() => {
  clearMocks()
})

// [what, command, the call, expected args on the wire, sidecar result, resolved value]
type Case = [string, string, () => Promise<unknown>, unknown, unknown, unknown]

const cases: Case[] = [
  ['ping', 'ping', () => api.ping(), {}, true, true],
  [
    'push',
    'push',
    () => api.push({ payload: { n: 1 }, priority: 'high', delayMs: 5 }),
    { item: { payload: { n: 1 }, priority: 'high', delayMs: 5 } },
    { id: 'a' },
    { id: 'a' },
  ],
  [
    'pushBatch',
    'push_batch',
    () => api.pushBatch([{ payload: 1 }, { payload: null, id: 'b' }]),
    { items: [{ payload: 1 }, { payload: null, id: 'b' }] },
    { ids: ['x', 'b'], duplicates: [] },
    { ids: ['x', 'b'], duplicates: [] },
  ],
  ['pop without options', 'pop', () => api.pop(), {}, null, null],
  [
    'pop with a long poll',
    'pop',
    () => api.pop({ timeoutMs: 25_000, leaseMs: 60_000, partition: 2 }),
    { options: { timeoutMs: 25_000, leaseMs: 60_000, partition: 2 } },
    item,
    item,
  ],
  ['popBatch', 'pop_batch', () => api.popBatch({ max: 10 }), { options: { max: 10 } }, [item], [item]],
  ['complete by id', 'complete', () => api.complete('a'), { id: 'a' }, null, undefined],
  ['complete by id with a lease', 'complete', () => api.complete('a', { leaseId: 'L9' }), { id: 'a', leaseId: 'L9' }, null, undefined],
  ['complete an item from pop', 'complete', () => api.complete(item), { id: 'a', leaseId: 'L1' }, null, undefined],
  [
    'fail an item from pop',
    'fail',
    () => api.fail(item, { error: 'timeout' }),
    { id: 'a', leaseId: 'L1', error: 'timeout' },
    { retry: true, availableAt: 5 },
    { retry: true, availableAt: 5 },
  ],
  ['fail by id', 'fail', () => api.fail('a'), { id: 'a' }, { retry: false }, { retry: false }],
  ['cancel', 'cancel', () => api.cancel('a'), { id: 'a' }, null, undefined],
  ['release', 'release', () => api.release('a'), { id: 'a' }, null, undefined],
  [
    'completeBatch',
    'complete_batch',
    () => api.completeBatch([item, 'b']),
    { items: [{ id: 'a', leaseId: 'L1' }, { id: 'b' }] },
    { completed: ['a'], errors: [{ index: 1, id: 'b', error: { code: -32009, message: 'm', data: { kind: 'InvalidState' } } }] },
    { completed: ['a'], errors: [{ index: 1, id: 'b', error: { code: -32009, message: 'm', data: { kind: 'InvalidState' } } }] },
  ],
  ['reject without a reason', 'reject', () => api.reject('a'), { id: 'a' }, null, undefined],
  ['reject with a reason', 'reject', () => api.reject('a', 'no'), { id: 'a', reason: 'no' }, null, undefined],
  [
    'fail with the outbox options',
    'fail',
    () => api.fail(item, { error: 'HTTP 429', retryAfterMs: 2_000, charge: false }),
    { id: 'a', leaseId: 'L1', error: 'HTTP 429', retryAfterMs: 2_000, charge: false },
    { retry: true, availableAt: 9 },
    { retry: true, availableAt: 9 },
  ],
  [
    'fail dead',
    'fail',
    () => api.fail('a', { dead: true }),
    { id: 'a', dead: true },
    { retry: false },
    { retry: false },
  ],
  [
    'push held, unique, with a destination',
    'push',
    () =>
      api.push({
        payload: 1,
        destination: 'http://h',
        hold: true,
        unique: { key: 'k', policy: 'replace' },
      }),
    { item: { payload: 1, destination: 'http://h', hold: true, unique: { key: 'k', policy: 'replace' } } },
    { id: 'b', unique: 'replaced', replaced: 'a' },
    { id: 'b', unique: 'replaced', replaced: 'a' },
  ],
  [
    'pop for destinations',
    'pop_batch',
    () => api.popBatch({ max: 8, destinations: { except: ['http://down'] } }),
    { options: { max: 8, destinations: { except: ['http://down'] } } },
    [item],
    [item],
  ],
  ['requeue', 'requeue', () => api.requeue('a'), { id: 'a' }, null, undefined],
  [
    'extendLease',
    'extend_lease',
    () => api.extendLease(item, 60_000),
    { id: 'a', leaseId: 'L1', leaseMs: 60_000 },
    { leaseExpiresAt: 99 },
    { leaseExpiresAt: 99 },
  ],
  ['get', 'get', () => api.get('a'), { id: 'a' }, item, item],
  [
    'list',
    'list',
    () => api.list({ status: 'failed', limit: 10, after: 'c1' }),
    { options: { status: 'failed', limit: 10, after: 'c1' } },
    { items: [item], next: null },
    { items: [item], next: null },
  ],
  ['list without options', 'list', () => api.list(), {}, { items: [], next: null }, { items: [], next: null }],
  ['purge', 'purge', () => api.purge('completed'), { status: 'completed' }, { removed: 3 }, { removed: 3 }],
  ['stats', 'stats', () => api.stats(), {}, { totalEnqueued: 1 }, { totalEnqueued: 1 }],
  [
    'health',
    'health',
    () => api.health(),
    {},
    { healthy: true, breaker: 'closed', paused: false },
    { healthy: true, breaker: 'closed', paused: false },
  ],
  ['pause', 'pause', () => api.pause(), {}, null, undefined],
  ['resume', 'resume', () => api.resume(), {}, null, undefined],
  ['flush', 'flush', () => api.flush(), {}, null, undefined],
  ['shutdown', 'shutdown', () => api.shutdown(), {}, null, undefined],
  [
    'enqueueRequest with the defaults',
    'enqueue_request',
    () => api.enqueueRequest({ url: 'http://127.0.0.1:8080/notes', body: { n: 1 } }),
    { request: { url: 'http://127.0.0.1:8080/notes', body: { n: 1 } } },
    { id: 'r1' },
    { id: 'r1' },
  ],
  [
    'enqueueRequest with every option',
    'enqueue_request',
    () => api.enqueueRequest(everyRequestOption),
    { request: everyRequestOption },
    { id: 'note-7', unique: 'replaced', replaced: 'note-6' },
    { id: 'note-7', unique: 'replaced', replaced: 'note-6' },
  ],
  [
    'enqueueRequest with a binary body',
    'enqueue_request',
    () => api.enqueueRequest({ method: 'POST', url: 'http://h/upload', bodyBase64: 'AAEC' }),
    { request: { method: 'POST', url: 'http://h/upload', bodyBase64: 'AAEC' } },
    { id: 'r2' },
    { id: 'r2' },
  ],
  ['setOnline for all destinations', 'set_online', () => api.setOnline(false), { online: false }, null, undefined],
  [
    'setOnline for one destination',
    'set_online',
    () => api.setOnline(true, 'http://127.0.0.1:8080'),
    { online: true, destination: 'http://127.0.0.1:8080' },
    null,
    undefined,
  ],
  [
    'setHeaders',
    'set_headers',
    () => api.setHeaders('https://api.example.com/any/path', { authorization: 'Bearer t2' }),
    { destination: 'https://api.example.com/any/path', headers: { authorization: 'Bearer t2' } },
    null,
    undefined,
  ],
  [
    'outboxStatus',
    'outbox_status',
    () => api.outboxStatus(),
    {},
    outbox,
    outbox,
  ],
  [
    'status',
    'status',
    () => api.status(),
    {},
    { state: 'ready', ready: { protocol: 1 }, lastExit: null, failure: null },
    { state: 'ready', ready: { protocol: 1 }, lastExit: null, failure: null },
  ],
]

/** The plugin's commands: the quoted names of `COMMANDS` in command_names.rs. */
function pluginCommands(): string[] {
  const list = commandNames.slice(commandNames.indexOf('const COMMANDS'))
  return [...list.slice(0, list.indexOf('];')).matchAll(/"([a-z_]+)"/g)].map((m) => m[1])
}

describe('commands', () => {
  test.each(cases)('%s → plugin:sync-queue|%s', async (_name, command, run, args, result, resolved) => {
    const calls = answer(result)
    await expect(run()).resolves.toEqual(resolved)
    expect(calls).toHaveLength(1)
    expect(calls[0].cmd).toBe(`plugin:sync-queue|${command}`)
    expect(wire(calls[0].args)).toEqual(args)
  })

  test('every command of the plugin has a function', () => {
    const invoked = new Set(cases.map(([, command]) => command))
    // The list build.rs reads (tests/command_list.rs checks the Rust side).
    expect(pluginCommands()).toContain('status')
    expect([...invoked].sort()).toEqual(pluginCommands().sort())
  })

  test('an explicit leaseId wins over the item’s', async () => {
    const calls = answer(null)
    await api.complete(item, { leaseId: 'other' })
    expect(wire(calls[0].args)).toEqual({ id: 'a', leaseId: 'other' })
  })
})

describe('errors', () => {
  const notFound: SyncQueueErrorData = {
    kind: 'ItemNotFound',
    code: -32002,
    message: "no item with id 'zz'",
    data: { kind: 'ItemNotFound' },
  }

  test.each(cases)('%s (%s) rejects with a SyncQueueError', async (_name, _command, run) => {
    reject(notFound)
    const error = await run().then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(SyncQueueError)
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject(notFound)
  })

  test('kinds tell errors apart', async () => {
    reject({ kind: 'CapacityExceeded', code: -32001, message: 'the queue is full', data: { kind: 'CapacityExceeded' } })
    const error = await api.push({ payload: 1 }).catch((e: unknown) => e)
    expect(isSyncQueueError(error)).toBe(true)
    expect(isSyncQueueError(error, 'CapacityExceeded')).toBe(true)
    expect(isSyncQueueError(error, 'ItemNotFound')).toBe(false)
    if (!isSyncQueueError(error)) throw new Error('unreachable')
    expect(error.code).toBe(-32001)
    expect(error.message).toBe('the queue is full')
    expect(error.name).toBe('SyncQueueError')
  })

  test('a dead sidecar carries its exit status and stderr', async () => {
    const data = { code: null, signal: 9, stderrTail: 'Traceback …' }
    reject({ kind: 'SidecarExited', code: null, message: 'the sync-queue sidecar stopped unexpectedly', data })
    const error = await api.pop({ timeoutMs: 1000 }).catch((e: unknown) => e)
    expect(isSyncQueueError(error, 'SidecarExited')).toBe(true)
    expect((error as SyncQueueError).code).toBeNull()
    expect((error as SyncQueueError).data).toEqual(data)
  })

  test('a string rejection from Tauri itself becomes kind Ipc', async () => {
    reject('sync-queue.purge not allowed. Permissions associated with this command: sync-queue:allow-purge')
    const error = await api.purge('failed').catch((e: unknown) => e)
    expect(isSyncQueueError(error, 'Ipc')).toBe(true)
    expect((error as SyncQueueError).message).toContain('not allowed')
    expect((error as SyncQueueError).code).toBeNull()
  })

  test('isSyncQueueError refuses other values', () => {
    expect(isSyncQueueError(new Error('x'))).toBe(false)
    expect(isSyncQueueError(notFound)).toBe(false)
    expect(isSyncQueueError(undefined)).toBe(false)
  })
})

describe('events', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each listener has its own payload type
  type Listener = [string, string, (cb: (payload: any) => void) => Promise<() => void>, unknown]

  const listeners: Listener[] = [
    ['onItemsAvailable', 'sync-queue://items-available', api.onItemsAvailable, { pending: 3 }],
    ['onItemFailed', 'sync-queue://item-failed', api.onItemFailed, { id: 'a', attempts: 4, error: 'boom' }],
    ['onBreakerChanged', 'sync-queue://breaker-changed', api.onBreakerChanged, { state: 'open', reason: '5 failures' }],
    [
      'onReady',
      'sync-queue://ready',
      api.onReady,
      { version: '0.1.0', protocol: 1, dataDir: '/d', durability: 'always', recovered: { pending: 2 } },
    ],
    [
      'onSidecarExited',
      'sync-queue://sidecar-exited',
      api.onSidecarExited,
      { code: null, signal: 9, stderrTail: '', restarting: true, restartInMs: 250 },
    ],
    [
      'onDestinationOffline',
      'sync-queue://destination-offline',
      api.onDestinationOffline,
      { destination: 'http://127.0.0.1:8080', error: 'connection refused', nextProbeAt: 1_500 },
    ],
    ['onDestinationOnline', 'sync-queue://destination-online', api.onDestinationOnline, { destination: 'http://127.0.0.1:8080' }],
    [
      'onAuthRequired',
      'sync-queue://auth-required',
      api.onAuthRequired,
      { destination: 'https://api.example.com', status: 401, itemId: 'r1' },
    ],
    [
      'onOutboxStalled',
      'sync-queue://outbox-stalled',
      api.onOutboxStalled,
      { reason: 'no progress for 60000 ms', since: 5, restarted: true },
    ],
    [
      'onOutboxProgress',
      'sync-queue://outbox-progress',
      api.onOutboxProgress,
      { id: 'r1', destination: 'http://127.0.0.1:8080', outcome: 'dead', status: 400, error: 'HTTP 400: bad', attempts: 1 },
    ],
  ]

  test.each(listeners)('%s listens to %s and unlistens', async (_name, event, subscribe, payload) => {
    mockIPC(() => null, { shouldMockEvents: true })
    const callback = vi.fn()
    const unlisten = await subscribe(callback)
    await emit(event, payload)
    expect(callback).toHaveBeenCalledTimes(1)
    expect(callback).toHaveBeenCalledWith(payload)

    await emit('sync-queue://something-else', payload)
    expect(callback).toHaveBeenCalledTimes(1)

    unlisten()
    await emit(event, payload)
    expect(callback).toHaveBeenCalledTimes(1)
  })

  test('EVENTS lists the event names', () => {
    expect(Object.values(EVENTS).sort()).toEqual(listeners.map(([, event]) => event).sort())
  })
})
