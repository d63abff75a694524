import { defineConfig } from 'vite'

// Tauri expects a fixed port and fails if it is taken; src-tauri is Rust, not watched.
export default defineConfig({
  clearScreen: false,
  server: { port: 1420, strictPort: true, watch: { ignored: ['**/src-tauri/**'] } },
  // The plugin's package is a link to ../../tauri-plugin, which has its own
  // node_modules: use one copy of @tauri-apps/api.
  resolve: { dedupe: ['@tauri-apps/api'] },
  build: { target: 'safari15', outDir: 'dist', emptyOutDir: true },
})
