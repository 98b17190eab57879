// Builds the console into crates/kmsd/console-dist with fixed file names, which kmsd embeds
// (crates/kmsd/src/console.rs lists them). One script, one stylesheet, no hashed names, no
// inline code (kmsd's Content-Security-Policy forbids inline scripts).
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  build: {
    outDir: '../crates/kmsd/console-dist',
    emptyOutDir: true,
    modulePreload: false,
    cssCodeSplit: false,
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
    rolldownOptions: {
      output: {
        entryFileNames: 'assets/console.js',
        chunkFileNames: 'assets/console-[name].js',
        assetFileNames: 'assets/console[extname]',
        codeSplitting: false,
      },
    },
  },
});
