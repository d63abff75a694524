// Builds guest-js/index.ts twice:
// - dist-js/: the npm package, as ESM (index.js), CommonJS (index.cjs) and
//   declarations (index.d.ts), with @tauri-apps/api left to the app;
// - api-iife.js: one self-contained script (@tauri-apps/api bundled in) that
//   build.rs registers with `global_api_script_path`, so an app with
//   `app.withGlobalTauri` finds the same functions at window.__TAURI__.syncQueue.
// api-iife.js is committed (the crate ships it; scripts/check.sh fails when it
// is stale); dist-js/ is not (npm builds it on `npm pack`/`npm publish`).
import { readFileSync } from 'node:fs'
import { nodeResolve } from '@rollup/plugin-node-resolve'
import terser from '@rollup/plugin-terser'
import typescript from '@rollup/plugin-typescript'

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'))
const input = 'guest-js/index.ts'
// The name official plugins would use: `plugin-sync-queue` -> syncQueue.
const globalName = 'syncQueue'
const iifeName = '__TAURI_PLUGIN_SYNC_QUEUE__'

// A warning (an unresolved import, a circular dependency) fails the build.
const onwarn = (warning) => {
  throw Object.assign(new Error(warning.message), warning)
}

export default [
  {
    input,
    output: [
      { file: pkg.exports.import, format: 'esm' },
      { file: pkg.exports.require, format: 'cjs' },
    ],
    plugins: [typescript({ tsconfig: './tsconfig.json', declaration: true, declarationDir: 'dist-js' })],
    external: [/^@tauri-apps\/api/],
    onwarn,
  },
  {
    input,
    output: {
      file: 'api-iife.js',
      format: 'iife',
      name: iifeName,
      // Only where the app enabled the global API (`window.__TAURI__` exists);
      // `var` at the top of an injected script is not guaranteed to land on
      // `window`, hence defineProperty.
      banner: "if ('__TAURI__' in window) {",
      footer: `Object.defineProperty(window.__TAURI__, '${globalName}', { value: ${iifeName} }) }`,
    },
    plugins: [typescript({ tsconfig: './tsconfig.json', declaration: false }), nodeResolve(), terser()],
    onwarn,
  },
]
