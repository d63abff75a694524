// Builds src/index.ts to dist/: ESM (index.js), CommonJS (index.cjs) and
// declarations (index.d.ts, from tsconfig.json). @tauri-apps/api stays
// external: the app brings its own.
import typescript from '@rollup/plugin-typescript'

export default {
  input: 'src/index.ts',
  output: [
    { file: 'dist/index.js', format: 'esm', sourcemap: true },
    { file: 'dist/index.cjs', format: 'cjs', sourcemap: true },
  ],
  external: [/^@tauri-apps\/api/],
  plugins: [typescript({ tsconfig: './tsconfig.json' })],
}
