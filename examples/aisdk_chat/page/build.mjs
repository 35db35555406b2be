// `npm run build`: the page as dist/index.html + dist/assets/app.js (the backend
// serves "/" and mounts /assets).
import { build } from 'esbuild';
import { copyFileSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: ['src/main.tsx'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  outfile: 'dist/assets/app.js',
  logLevel: 'info',
});
copyFileSync('index.html', 'dist/index.html');
