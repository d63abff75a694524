import { afterEach, expect, test } from 'vitest'
import { clearMocks, mockIPC } from '@tauri-apps/api/mocks'

import * as api from '../index'
import script from '../../api-iife.js?raw'

// api-iife.js is the committed build that Tauri injects into apps with
// `withGlobalTauri` (scripts/check.sh fails when it is stale); `?raw` is Vite's
// import of a file's text.

type TauriWindow = Window & { __TAURI__?: Record<string, Record<string, unknown>> }

afterEach(() => {
  clearMocks()
  delete (window as TauriWindow).__TAURI__
})

test('the global API script exposes the module as window.__TAURI__.syncQueue', async () => {
  const w = window as TauriWindow
  w.__TAURI__ = {}
  new Function(script)()
  const global = w.__TAURI__.syncQueue
  expect(Object.keys(global).sort()).toEqual(Object.keys(api).sort())

  const calls: string[] = []
  mockIPC((cmd) => {
    calls.push(cmd)
    return true
  })
  await expect((global.ping as () => Promise<boolean>)()).resolves.toBe(true)
  expect(calls).toEqual(['plugin:sync-queue|ping'])
})

test('without the global API the script defines nothing', () => {
  new Function(script)()
  expect('__TAURI__' in window).toBe(false)
})
