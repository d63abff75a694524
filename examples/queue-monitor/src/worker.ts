// The worker, as in tauri-plugin/README.md: pop (a long poll), upload, then complete,
// or fail so that the queue retries with backoff or dead-letters the item.
import { complete, fail, isSyncQueueError, pop, type Item } from 'tauri-plugin-sync-queue-api'

export interface WorkerHooks {
  /** What the worker is doing, in a few words. */
  state(text: string): void
  synced(item: Item, ms: number): void
  failed(item: Item, error: string, retry: boolean): void
  /** A call to the queue failed; the worker waits a moment and goes on. */
  trouble(error: unknown): void
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export async function runWorker(
  upload: (item: Item) => Promise<void>,
  hooks: WorkerHooks,
): Promise<never> {
  for (;;) {
    let item: Item | null
    try {
      hooks.state('waiting for an item')
      item = await pop({ timeoutMs: 25_000 })
    } catch (e) {
      // SidecarExited: it crashed and the plugin restarts it; a pop sent now waits for
      // the new process. Anything else is shown, and tried again shortly.
      if (!isSyncQueueError(e, 'SidecarExited')) hooks.trouble(e)
      hooks.state('the queue is restarting')
      await sleep(500)
      continue
    }
    if (!item) continue // the long poll ended with nothing to do

    hooks.state(`syncing ${item.id}`)
    const started = performance.now()
    let error: string | null = null
    try {
      await upload(item)
    } catch (e) {
      error = e instanceof Error ? e.message : String(e)
    }
    try {
      if (error === null) {
        await complete(item) // passes item.leaseId: only this attempt can complete it
        hooks.synced(item, performance.now() - started)
      } else {
        const { retry } = await fail(item, { error })
        hooks.failed(item, error, retry)
      }
    } catch (e) {
      // The sidecar died under us: the item's attempt is counted when it comes back,
      // and the item is handed out again.
      hooks.trouble(e)
    }
  }
}
