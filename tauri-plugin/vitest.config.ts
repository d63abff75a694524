import { defineConfig } from 'vitest/config'

// mockIPC installs window.__TAURI_INTERNALS__, so the tests need a DOM.
export default defineConfig({
  test: {
    environment: 'jsdom',
    include: ['guest-js/test/**/*.test.ts'],
  },
})
